use super::*;

fn host() -> HostRange {
    HostRange { uid: (100_000, 1_000_000), gid: (200_000, 1_000_000) }
}

#[test]
fn subid_parsing_picks_root_lines() {
    let t = "alice:100000:65536\nroot:1000000:1000000000\n0:5:10\nbad line\nroot:x:1\n";
    assert_eq!(parse_subid(t, "root"), vec![(1_000_000, 1_000_000_000), (5, 10)]);
    assert_eq!(parse_subid(t, "alice"), vec![(100_000, 65536)]);
}

#[test]
fn host_range_falls_back_to_default() {
    let d = tempfile::tempdir().unwrap();
    let r = HostRange::from_files(&d.path().join("nope"), &d.path().join("nope2"));
    assert_eq!(r, HostRange::default());
    std::fs::write(d.path().join("subuid"), "root:300000:70000\n").unwrap();
    let r = HostRange::from_files(&d.path().join("subuid"), &d.path().join("nope2"));
    assert_eq!(r.uid, (300_000, 70_000));
    assert_eq!(r.gid, DEFAULT_RANGE);
}

#[test]
fn shared_map_starts_at_range() {
    let m = IdmapSet::allocate(&IdmapConfig::default(), &host(), &[]).unwrap();
    assert_eq!(m.render(true), "0 100000 65536\n");
    assert_eq!(m.render(false), "0 200000 65536\n");
    assert_eq!(m.to_host(true, 0), Some(100_000));
    assert_eq!(m.to_host(true, 65536), None);
    assert_eq!(m.to_ns(false, 200_005), Some(5));
}

#[test]
fn isolated_maps_do_not_overlap() {
    let cfg = IdmapConfig { isolated: true, ..Default::default() };
    let a = IdmapSet::allocate(&cfg, &host(), &[]).unwrap();
    let b = IdmapSet::allocate(&cfg, &host(), std::slice::from_ref(&a)).unwrap();
    assert_eq!(a.to_host(true, 0), Some(100_000 + 65536));
    assert_eq!(b.to_host(true, 0), Some(100_000 + 2 * 65536));
    assert_eq!(b.to_host(false, 0), Some(200_000 + 2 * 65536));
}

#[test]
fn isolated_runs_out() {
    let small = HostRange { uid: (0, 65536 * 2), gid: (0, 65536 * 2) };
    let cfg = IdmapConfig { isolated: true, ..Default::default() };
    let a = IdmapSet::allocate(&cfg, &small, &[]).unwrap();
    assert!(matches!(IdmapSet::allocate(&cfg, &small, &[a]), Err(Error::Exhausted { .. })));
}

#[test]
fn explicit_base_and_size() {
    let cfg = IdmapConfig { base: Some(150_000), size: Some(1000), ..Default::default() };
    let h = HostRange { uid: (100_000, 100_000), gid: (100_000, 100_000) };
    let m = IdmapSet::allocate(&cfg, &h, &[]).unwrap();
    assert_eq!(m.render(true), "0 150000 1000\n");
    let bad = IdmapConfig { base: Some(10), ..Default::default() };
    assert!(IdmapSet::allocate(&bad, &h, &[]).is_err());
}

#[test]
fn raw_idmap_punches_a_hole() {
    let cfg = IdmapConfig {
        raw: vec![IdEntry { is_uid: true, is_gid: false, host_id: 1000, ns_id: 1000, range: 1 }],
        ..Default::default()
    };
    let m = IdmapSet::allocate(&cfg, &host(), &[]).unwrap();
    assert_eq!(m.render(true), "0 100000 1000\n1000 1000 1\n1001 101001 64535\n");
    assert_eq!(m.render(false), "0 200000 65536\n");
    assert_eq!(m.to_host(true, 1000), Some(1000));
    assert_eq!(m.to_host(true, 1001), Some(101_001));
}

#[test]
fn lxd_json_roundtrip() {
    let m = IdmapSet::allocate(&IdmapConfig::default(), &host(), &[]).unwrap();
    let j = m.to_json();
    assert!(j.contains("\"Isuid\":true"), "{j}");
    assert_eq!(IdmapSet::from_json(&j).unwrap(), m);
    assert!(IdmapSet::from_json("").unwrap().entries.is_empty());
    assert!(IdmapSet::from_json("{").is_err());
}

#[test]
fn config_keys_are_read() {
    let mut c = BTreeMap::new();
    c.insert("security.idmap.isolated".to_string(), "true".to_string());
    c.insert("security.idmap.size".to_string(), "131072".to_string());
    let cfg = IdmapConfig::from_config(&c).unwrap();
    assert!(cfg.isolated);
    assert_eq!(cfg.size, Some(131072));
    c.insert("security.idmap.base".to_string(), "abc".to_string());
    assert!(IdmapConfig::from_config(&c).is_err());
}
