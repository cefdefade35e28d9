//! Ports of LXD `shared/validate/validate_test.go` plus the instance-key validators.

use super::*;

fn run(v: Validator, cases: &[(&str, bool)]) {
    for (value, ok) in cases {
        assert_eq!(v.check(value).is_ok(), *ok, "{v:?} on {value:?}: {:?}", v.check(value));
    }
}

#[test]
fn empty_is_unset_except_not_empty() {
    for v in [Validator::Bool, Validator::Int64, Validator::Mac, Validator::Uuid, Validator::CpuLimit] {
        assert!(v.check("").is_ok(), "{v:?}");
    }
    assert_eq!(Validator::NotEmpty.check("").unwrap_err(), "Required value");
    assert!(Validator::NotEmpty.check("   ").is_ok());
}

#[test]
fn int64() {
    run(Validator::Int64, &[("123", true), ("-123", true), ("0", true), ("123abc", false), ("abc123", false)]);
    assert_eq!(Validator::Int64.check("x").unwrap_err(), "Invalid value for an integer \"x\"");
}

#[test]
fn uint32() {
    run(
        Validator::Uint32,
        &[("0", true), ("4294967295", true), ("4294967296", false), ("-1", false), ("100.5", false), ("abc", false), ("+1", false)],
    );
}

#[test]
fn priority_range() {
    run(Validator::Range(0, 10), &[("0", true), ("10", true), ("-1", false), ("1000", false), ("abc", false)]);
}

#[test]
fn bools() {
    run(
        Validator::Bool,
        &[("true", true), ("false", true), ("1", true), ("0", true), ("yes", true), ("no", true), ("ON", true), ("off", true), ("maybe", false), ("2", false)],
    );
    assert_eq!(Validator::Bool.check("foo").unwrap_err(), "Invalid value for a boolean \"foo\"");
}

#[test]
fn any() {
    run(Validator::Any, &[("foo", true), ("bar", true), ("", true)]);
}

#[test]
fn sizes() {
    run(
        Validator::Size,
        &[("1KiB", true), ("1024", true), ("1MB", true), ("1GB", true), ("1PiB", true), ("-1KiB", false), ("abc", false), ("1.5KiB", false), ("1,5KiB", false)],
    );
}

#[test]
fn device_ids() {
    run(
        Validator::DeviceId,
        &[("1234", true), ("abcd", true), ("12ab", true), ("cdef", true), ("defg", false), ("0", false), ("1", false), ("12", false), ("123", false), ("-123", false), ("abc", false), ("123abc", false), ("ABCD", false)],
    );
}

#[test]
fn interface_names() {
    run(
        Validator::InterfaceName,
        &[("eth0", true), ("wlan0", true), ("lo", true), ("eth0.10", true), ("eth-0", true), ("..eth0", false), ("1234", true), ("abcdefghijklmno", true), ("abcdefghijklmnop", false), ("eth,0", false), ("a", false)],
    );
}

#[test]
fn macs() {
    run(
        Validator::Mac,
        &[("00:00:5e:00:53:01", true), ("02:00:5e:10:00:00:00:01", false), ("00-00-5e-00-53-01", false), ("0000.5e00.5301", false), ("invalid", false)],
    );
    let ib20 = ["a0"; 20].join(":");
    run(Validator::InfinibandMac, &[("00:11:22:33:44:55:66:77", true), (ib20.as_str(), true), ("00:11:22:33:44:55", false)]);
}

#[test]
fn pci_addresses() {
    run(
        Validator::PciAddress,
        &[("0000:12:ab.0", true), ("0010:12:ab.0", true), ("0000:12:CD.0", true), ("12:ab.0", true), ("12:CD.0", true), ("0000:12:gh.0", false), ("0000:12:GH.0", false), ("12:gh.0", false), ("12:GH.0", false), ("000:12:CD.0", false), ("12.ab.0", false)],
    );
}

#[test]
fn networks() {
    run(Validator::NetV4, &[("192.0.2.1", false), ("192.0.2.1/24", false), ("192.0.2.0/24", true), ("2001:db8::1", false), ("2001:db8::/64", false), ("192.0.2.1/32", true), ("192.0.2.0/33", false)]);
    run(Validator::NetV6, &[("192.0.2.1", false), ("192.0.2.0/24", false), ("2001:db8::1", false), ("2001:db8::1/64", false), ("2001:db8::/64", true)]);
    run(Validator::Ipv4, &[("192.0.2.1", true), ("192.0.2.256", false), ("2001:db8::1", false)]);
    run(Validator::Ipv6, &[("2001:db8::1", true), ("2001:db8::g", false), ("192.0.2.1", false)]);
    run(Validator::ListOf(&Validator::NetV4), &[("192.0.2.0/24, 198.51.100.0/24", true), ("192.0.2.0/24,", false), ("192.0.2.0/24,x", false)]);
}

#[test]
fn vlan_mtu_mode_path() {
    run(Validator::Vlan, &[("0", true), ("4094", true), ("4095", false), ("-1", false), ("x", false)]);
    run(Validator::Mtu, &[("1280", true), ("1500", true), ("16384", true), ("1279", false), ("16385", false), ("x", false)]);
    run(Validator::FileMode, &[("0660", true), ("660", true), ("0", true), ("00660", true), ("7777", true), ("10000", false), ("0999", false), ("rw", false), ("+660", false)]);
    run(Validator::AbsPath, &[("/a", true), ("a", false)]);
    run(Validator::IoLimit, &[("10MB", true), ("100iops", true), ("iops", false), ("fast", false)]);
}

#[test]
fn one_of() {
    let v = Validator::OneOf(&["soft", "hard"]);
    run(v, &[("soft", true), ("hard", true), ("Hard", false), ("medium", false)]);
    assert!(v.check("medium").unwrap_err().contains("not one of soft, hard"));
}

#[test]
fn memory_limits() {
    run(Validator::MemoryLimit, &[("512MB", true), ("1GiB", true), ("50%", true), ("0%", false), ("0", false), ("0MB", false), ("-5%", false), ("1.5GB", false), ("lots", false), ("5x%", false)]);
}

#[test]
fn cpu_allowance() {
    run(Validator::CpuAllowance, &[("50%", true), ("25ms/100ms", true), ("25/100", true), ("25ms", false), ("a%", false), ("25ms/xms", false)]);
}

#[test]
fn cron_schedules() {
    let v = Validator::Cron(crate::config::SCHEDULE_ALIASES);
    run(
        v,
        &[
            ("0 6 * * *", true),
            ("*/15 * * * *", true),
            ("0 0 1,15 * mon-fri", true),
            ("0 0 * JAN,Jul SUN", true),
            ("0 6 * * *, @startup", true),
            ("@daily", true),
            ("@never", true),
            ("@every 1h", false),
            ("0 6 * *", false),
            ("61 * * * *", false),
            ("0 24 * * *", false),
            ("0 0 0 * *", false),
            ("0 0 * 13 *", false),
            ("0 0 * * 7", false),
            ("5-1 * * * *", false),
            ("*/0 * * * *", false),
            ("0 6 * * *,@daily", false),
        ],
    );
}

#[test]
fn expiry() {
    run(
        Validator::Expiry,
        &[("1d", true), ("1M 2H 3d 4w 5m 6y", true), (" 2w ", true), ("0d 0d", true), ("1d 2d", false), ("1x", false), ("d", false), ("1.5d", false), ("1d  2H", false), ("-1d", false)],
    );
}

#[test]
fn uuid_yaml_cloud_init() {
    run(Validator::Uuid, &[("9f3c1b8e-4b0f-4a57-9b43-2c5d0e0f1a2b", true), ("not-a-uuid", false)]);
    run(Validator::Yaml, &[("a: 1\nb: [1, 2]\n", true), ("a: [1, 2", false)]);
    run(
        Validator::CloudInitUserData,
        &[("#cloud-config\nfoo: bar", true), ("#cloud-config\n", true), ("#cloud-config", true), ("some other user data format", true), ("#!/bin/sh\necho hi", true), ("#cloud-config\nfoo: [bar", false)],
    );
}

#[test]
fn listen_addresses() {
    run(
        Validator::ListenAddress,
        &[(":8443", true), ("[::]:8443", true), ("0.0.0.0", true), ("127.0.0.1:8443", true), ("fe80::1", true), ("host.example:443", true), ("[fe80::1", false), ("1.2.3.4:x", false), ("bad_host:1", false)],
    );
}

#[test]
fn custom_descriptions_render() {
    assert_eq!(Validator::ListOf(&Validator::Ipv4).describe(), "comma list of IPv4 address");
    assert!(Validator::Cron(&["@daily"]).describe().contains("@daily"));
}
