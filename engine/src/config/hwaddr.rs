//! DeviceNextInterfaceHWAddr: random MACs in the `00:16:3e` (Xen OUI) block LXD uses.

use std::collections::HashSet;

use rand::Rng;

fn format_mac(low: u32) -> String {
    format!("00:16:3e:{:02x}:{:02x}:{:02x}", (low >> 16) & 0xff, (low >> 8) & 0xff, low & 0xff)
}

/// A random `00:16:3e:xx:xx:xx` not in `taken` (compared case-insensitively). When random
/// picks keep colliding it scans the block from a random start; only if all 2^24 addresses
/// are taken does it return a taken one.
pub fn next_interface_hwaddr(taken: &HashSet<String>) -> String {
    let taken_lower: HashSet<String> = taken.iter().map(|m| m.to_ascii_lowercase()).collect();
    let mut rng = rand::rng();
    let start: u32 = rng.random_range(0..(1 << 24));
    let first = format_mac(start);
    if !taken_lower.contains(&first) {
        return first;
    }
    for _ in 0..64 {
        let mac = format_mac(rng.random_range(0..(1 << 24)));
        if !taken_lower.contains(&mac) {
            return mac;
        }
    }
    for i in 1..(1u32 << 24) {
        let mac = format_mac((start + i) & 0xff_ffff);
        if !taken_lower.contains(&mac) {
            return mac;
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Validator;

    #[test]
    fn format_and_prefix() {
        let mut taken = HashSet::new();
        for _ in 0..200 {
            let mac = next_interface_hwaddr(&taken);
            assert!(mac.starts_with("00:16:3e:"), "{mac}");
            Validator::Mac.check(&mac).unwrap();
            assert_eq!(mac, mac.to_ascii_lowercase());
            assert!(taken.insert(mac.clone()), "duplicate {mac}");
        }
    }

    #[test]
    fn avoids_taken_even_when_uppercase() {
        // Take all but one address of a tiny slice is impractical for 2^24; instead take
        // one address many times and check the scan fallback by formatting.
        assert_eq!(format_mac(0x0a0b0c), "00:16:3e:0a:0b:0c");
        let taken: HashSet<String> = (0..1000u32).map(|i| format_mac(i).to_uppercase()).collect();
        for _ in 0..100 {
            let mac = next_interface_hwaddr(&taken);
            assert!(!taken.contains(&mac.to_uppercase()), "{mac} was taken");
        }
    }
}
