//! Device start/stop order (LXD `devices_sort.go`): NICs first (VM NIC names follow PCI
//! slots), then disks by path with the root first, then other types together; nested NICs
//! after plain ones; names break ties. Stop in the reverse order.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::Devices;

/// A device name with its config, in order.
pub type NamedDevice<'a> = (&'a str, &'a BTreeMap<String, String>);

fn get<'a>(d: &NamedDevice<'a>, k: &str) -> &'a str {
    d.1.get(k).map(String::as_str).unwrap_or("")
}

fn cmp(a: &NamedDevice<'_>, b: &NamedDevice<'_>) -> Ordering {
    let (ta, tb) = (get(a, "type"), get(b, "type"));
    if ta != tb {
        for first in ["nic", "disk"] {
            if ta == first {
                return Ordering::Less;
            }
            if tb == first {
                return Ordering::Greater;
            }
        }
        // Other types: grouped, in descending type name as LXD does.
        return tb.cmp(ta);
    }
    if ta == "disk" {
        let (pa, pb) = (get(a, "path"), get(b, "path"));
        if pa != pb {
            return match (pa, pb) {
                ("/", _) => Ordering::Less,
                (_, "/") => Ordering::Greater,
                _ => pa.cmp(pb),
            };
        }
    }
    let (na, nb) = (get(a, "nested"), get(b, "nested"));
    if na != nb {
        return match (na, nb) {
            ("", _) => Ordering::Less,
            (_, "") => Ordering::Greater,
            _ => na.cmp(nb),
        };
    }
    a.0.cmp(b.0)
}

/// Devices in start order.
pub fn sorted_devices(devices: &Devices) -> Vec<NamedDevice<'_>> {
    let mut v: Vec<NamedDevice<'_>> = devices.iter().map(|(n, c)| (n.as_str(), c)).collect();
    v.sort_by(cmp);
    v
}

/// Devices in stop order (start order reversed).
pub fn reversed_devices(devices: &Devices) -> Vec<NamedDevice<'_>> {
    let mut v = sorted_devices(devices);
    v.reverse();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Port of LXD `TestSortableDevices`.
    #[test]
    fn lxd_sortable_devices() {
        let mk = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let devices: Devices = [
            ("a-unix1", mk(&[("type", "unix")])),
            ("a-unix2", mk(&[("type", "unix")])),
            ("b-disk1", mk(&[("type", "disk"), ("path", "/foo/bar")])),
            ("b-disk2", mk(&[("type", "disk"), ("path", "/foo")])),
            ("b-disk3", mk(&[("type", "disk"), ("path", "/")])),
            ("z-nic-nested1", mk(&[("type", "nic"), ("nested", "foo1")])),
            ("z-nic-nested2", mk(&[("type", "nic"), ("nested", "foo2")])),
            ("z-nic1", mk(&[("type", "nic")])),
            ("z-nic2", mk(&[("type", "nic")])),
        ]
        .into_iter()
        .map(|(n, c)| (n.to_string(), c))
        .collect();
        let names = |v: Vec<NamedDevice<'_>>| v.into_iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>();
        let expected = [
            "z-nic1", "z-nic2", "z-nic-nested1", "z-nic-nested2", "b-disk3", "b-disk2", "b-disk1", "a-unix1", "a-unix2",
        ];
        assert_eq!(names(sorted_devices(&devices)), expected);
        let mut rev = expected.to_vec();
        rev.reverse();
        assert_eq!(names(reversed_devices(&devices)), rev);
    }

    #[test]
    fn other_types_group_together() {
        let mk = |t: &str| -> BTreeMap<String, String> { [("type".to_string(), t.to_string())].into() };
        let devices: Devices = [("a", mk("usb")), ("b", mk("gpu")), ("c", mk("usb")), ("d", mk("proxy"))]
            .into_iter()
            .map(|(n, c)| (n.to_string(), c))
            .collect();
        let order: Vec<&str> = sorted_devices(&devices).into_iter().map(|(n, _)| n).collect();
        assert_eq!(order, ["a", "c", "d", "b"]);
    }
}
