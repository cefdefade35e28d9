use super::*;
use std::os::unix::fs::MetadataExt;

fn rootfs() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("etc")).unwrap();
    std::fs::write(d.path().join("etc/passwd"), "root:x:0:0:inside\n").unwrap();
    std::os::unix::fs::symlink("/etc", d.path().join("abs")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc", d.path().join("rel")).unwrap();
    std::os::unix::fs::symlink("/proc/self/root/etc", d.path().join("magic")).unwrap();
    d
}

fn me() -> (u32, u32) {
    (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw())
}

fn read_all(f: &Files, p: &str) -> String {
    let mut s = String::new();
    f.read(Path::new(p)).unwrap().read_to_string(&mut s).unwrap();
    s
}

#[test]
fn dotdot_and_symlinks_stay_inside() {
    let d = rootfs();
    let f = Files::for_stopped(d.path(), None).unwrap();
    assert_eq!(read_all(&f, "/../../../etc/passwd"), "root:x:0:0:inside\n");
    assert_eq!(read_all(&f, "/abs/passwd"), "root:x:0:0:inside\n");
    assert_eq!(read_all(&f, "rel/passwd"), "root:x:0:0:inside\n");
    // A symlink through /proc resolves inside the rootfs, where no /proc exists.
    assert!(f.read(Path::new("/magic/passwd")).is_err());
}

#[test]
fn writes_through_planted_symlink_land_inside() {
    let d = rootfs();
    let f = Files::for_stopped(d.path(), None).unwrap();
    let (u, g) = me();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    std::os::unix::fs::symlink(&target, d.path().join("trap")).unwrap();
    // The symlink's target directory does not exist inside the rootfs: refused.
    assert!(f.write(Path::new("/trap"), u, g, 0o600, &mut "pwned".as_bytes()).is_err());
    assert!(!target.exists(), "write escaped the rootfs");
    // Once it exists inside, the write follows the symlink *inside* the root.
    let inside = d.path().join(target.strip_prefix("/").unwrap());
    std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
    f.write(Path::new("/trap"), u, g, 0o600, &mut "pwned".as_bytes()).unwrap();
    assert!(!target.exists(), "write escaped the rootfs");
    assert_eq!(std::fs::read_to_string(inside).unwrap(), "pwned");
}

#[test]
fn stat_list_mkdir_symlink_delete() {
    let d = rootfs();
    let f = Files::for_stopped(d.path(), None).unwrap();
    let (u, g) = me();
    f.mkdir(Path::new("/srv"), u, g, 0o750).unwrap();
    f.write(Path::new("/srv/a"), u, g, 0o640, &mut &b"\x00\x01bin"[..]).unwrap();
    f.symlink(Path::new("/srv/l"), Path::new("/etc/passwd"), u, g).unwrap();
    assert_eq!(f.list(Path::new("/srv")).unwrap(), vec!["a", "l"]);
    let st = f.stat(Path::new("/srv/a")).unwrap();
    assert_eq!((st.kind, st.mode, st.size, st.uid), (FileKind::File, 0o640, 5, u));
    let l = f.stat(Path::new("/srv/l")).unwrap();
    assert_eq!((l.kind, l.target.as_deref()), (FileKind::Symlink, Some(Path::new("/etc/passwd"))));
    assert_eq!(f.stat(Path::new("/")).unwrap().kind, FileKind::Directory);
    // Deleting a symlink removes the link, not what it points at.
    f.delete(Path::new("/abs")).unwrap();
    assert!(d.path().join("etc/passwd").exists());
    assert!(f.delete(Path::new("/srv")).is_err(), "non-empty dir");
    f.delete(Path::new("/srv/a")).unwrap();
    f.delete(Path::new("/srv/l")).unwrap();
    f.delete(Path::new("/srv")).unwrap();
    assert!(f.delete(Path::new("/..")).is_err());
    assert!(f.delete(Path::new("/")).is_err());
}

#[test]
fn ownership_is_mapped() {
    if !crate::testsupport::require("ownership_is_mapped", crate::testsupport::Tier::Root, crate::testsupport::probe_root()) {
        return;
    }
    let d = rootfs();
    let map = IdmapSet::allocate(
        &crate::idmap::IdmapConfig::default(),
        &crate::idmap::HostRange { uid: (100_000, 65536), gid: (300_000, 65536) },
        &[],
    )
    .unwrap();
    let f = Files::for_stopped(d.path(), Some(map)).unwrap();
    f.write(Path::new("/owned"), 1000, 1001, 0o644, &mut "x".as_bytes()).unwrap();
    let md = std::fs::metadata(d.path().join("owned")).unwrap();
    assert_eq!((md.uid(), md.gid()), (101_000, 301_001));
    let st = f.stat(Path::new("/owned")).unwrap();
    assert_eq!((st.uid, st.gid), (1000, 1001));
    assert!(f.write(Path::new("/bad"), 70_000, 0, 0o644, &mut "x".as_bytes()).is_err());
}
