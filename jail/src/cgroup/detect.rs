//! Detection, read-only: which cgroup interface the host has, where runs'
//! groups would go, and which controllers are usable there. Nothing is made
//! or moved here; [`super::Cgroups::open`] does that.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use super::parse::{self, CgroupMount};
use super::{fs, xattr, CgroupError, Controller, Mode, Result, DEFAULT_ROOT};

/// Where detection looks and what the operator asked for. The paths are
/// parameters so tests can point them at fixture files.
#[derive(Debug, Clone)]
pub struct CgroupConfig {
    /// Normally /proc/self/mountinfo.
    pub mountinfo: PathBuf,
    /// Normally /proc/self/cgroup.
    pub proc_cgroup: PathBuf,
    /// Force a mode instead of detecting it (`--cgroup-version`).
    pub mode: Option<Mode>,
    /// `--cgroup-root`. v2: an absolute path inside the cgroup2 mount, or a
    /// path relative to it; runs go directly under it. v1: a path relative to
    /// each hierarchy's mount. Default: [`DEFAULT_ROOT`] (v2 only when not
    /// delegated).
    pub root: Option<PathBuf>,
    /// v2, when `root` is not given: whether to use the process's own cgroup
    /// as a delegated subtree.
    pub delegation: DelegationChoice,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        CgroupConfig {
            mountinfo: "/proc/self/mountinfo".into(),
            proc_cgroup: "/proc/self/cgroup".into(),
            mode: None,
            root: None,
            delegation: DelegationChoice::Auto,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelegationChoice {
    /// Use the own cgroup when systemd marked it delegated (the
    /// `trusted.delegate` xattr that systemd >= 251 sets for Delegate=yes).
    Auto,
    /// Use the own cgroup even without the mark: older systemd, or a
    /// container whose cgroup namespace root is ours.
    Own,
    /// Always use the configured root.
    Never,
}

/// A delegated v2 subtree: the service's cgroup. This process moves into
/// `<subtree>/supervisor`, runs go under `<subtree>/runs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    pub subtree: PathBuf,
    pub marked_by_systemd: bool,
}

/// One v1 hierarchy and the controllers bound to it (`cpu,cpuacct` shares one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    pub controllers: Vec<Controller>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Groups at `<hierarchy mount>/<parent>/<name>` on each hierarchy.
    V1 { hierarchies: Vec<Hierarchy>, parent: PathBuf },
    /// Groups at `<runs>/<name>`.
    V2 {
        mount: PathBuf,
        /// The cgroup this process is in now.
        own: PathBuf,
        runs: PathBuf,
        delegation: Option<Delegation>,
    },
}

/// What `doctor` prints and `GET /v1/info` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub mode: Mode,
    /// Why this mode, in words.
    pub why: String,
    pub layout: Layout,
    /// Needed controllers the runs' groups can have.
    pub available: Vec<Controller>,
    /// Needed controllers they cannot.
    pub missing: Vec<Controller>,
}

impl Detection {
    /// Whether runs go into a delegated v2 subtree.
    pub fn delegated(&self) -> bool {
        matches!(self.layout, Layout::V2 { delegation: Some(_), .. })
    }

    /// The same, less the v1 hierarchies that hold none of `wanted`: groups
    /// made from it are not put in those (on v1 every hierarchy costs a
    /// mkdir, a join and an rmdir per jail). The same on v2, where one
    /// group has every controller.
    pub fn with_hierarchies_of(&self, wanted: &[Controller]) -> Detection {
        let mut out = self.clone();
        if let Layout::V1 { hierarchies, .. } = &mut out.layout {
            hierarchies.retain(|h| h.controllers.iter().any(|c| wanted.contains(c)));
            let kept = |c: &Controller| hierarchies.iter().any(|h| h.controllers.contains(c));
            out.available.retain(kept);
        }
        out
    }
}

pub fn detect(config: &CgroupConfig) -> Result<Detection> {
    let mounts = parse::mountinfo(&fs::read(&config.mountinfo)?);
    let hierarchies = v1_hierarchies(&mounts);
    let v2 = v2_mount(&mounts);
    let v2_offers = match v2 {
        Some(m) => controllers_in(&m.mount_point)?,
        None => Vec::new(),
    };
    let (mode, why) =
        choose_mode(config.mode, v2.map(|m| m.mount_point.as_path()), &v2_offers, &hierarchies, &config.mountinfo)?;
    match (mode, v2) {
        (Mode::V2, Some(mount)) => detect_v2(config, mount, why),
        _ => detect_v1(config, hierarchies, why),
    }
}

/// The rule: v2 when cgroup2 is the whole of /sys/fs/cgroup, or when the
/// unified hierarchy has memory, pids and cpu (hybrid hosts where they were
/// left to v2), or when it is all there is; else v1.
fn choose_mode(
    forced: Option<Mode>,
    v2_mount: Option<&Path>,
    v2_offers: &[Controller],
    hierarchies: &[Hierarchy],
    mountinfo: &Path,
) -> Result<(Mode, String)> {
    let unavailable = |mode, why: &str| Err(CgroupError::ModeUnavailable { mode, why: why.into() });
    match (forced, v2_mount) {
        (Some(Mode::V2), None) => return unavailable(Mode::V2, "no cgroup2 filesystem is mounted"),
        (Some(Mode::V2), Some(m)) => {
            return Ok((Mode::V2, format!("asked for; cgroup2 is mounted on {}", m.display())))
        }
        (Some(Mode::V1), _) if hierarchies.is_empty() => {
            return unavailable(Mode::V1, "no cgroup v1 hierarchy of memory, pids, cpu, cpuacct or freezer is mounted")
        }
        (Some(Mode::V1), _) => return Ok((Mode::V1, "asked for".into())),
        (None, _) => {}
    }
    if let Some(m) = v2_mount {
        if m == Path::new("/sys/fs/cgroup") {
            return Ok((Mode::V2, "cgroup2 is mounted on /sys/fs/cgroup (unified)".into()));
        }
        if Controller::V2.iter().all(|c| v2_offers.contains(c)) {
            let why = format!("the cgroup2 hierarchy on {} has memory, pids and cpu", m.display());
            return Ok((Mode::V2, why));
        }
        if hierarchies.is_empty() {
            let why = format!("cgroup2 on {} is the only cgroup filesystem", m.display());
            return Ok((Mode::V2, why));
        }
    }
    if hierarchies.is_empty() {
        return Err(CgroupError::NoHierarchy { mountinfo: mountinfo.to_owned() });
    }
    let why = match v2_mount {
        Some(m) => {
            format!("v1 hierarchies are mounted and the cgroup2 hierarchy on {} lacks memory, pids or cpu", m.display())
        }
        None => "v1 hierarchies are mounted and no cgroup2".into(),
    };
    Ok((Mode::V1, why))
}

/// The cgroup2 mount to use: /sys/fs/cgroup if it is one, else the first.
fn v2_mount(mounts: &[CgroupMount]) -> Option<&CgroupMount> {
    let mut v2 = mounts.iter().filter(|m| m.v1_options.is_none());
    let first = v2.clone().next();
    v2.find(|m| m.mount_point == Path::new("/sys/fs/cgroup")).or(first)
}

/// One entry per v1 hierarchy holding a controller we use, first mount wins
/// (later ones are bind mounts of the same hierarchy).
fn v1_hierarchies(mounts: &[CgroupMount]) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for m in mounts {
        let Some(options) = &m.v1_options else {
            continue;
        };
        let controllers: Vec<Controller> = options
            .iter()
            .filter_map(|o| Controller::from_name(o))
            .filter(|c| !out.iter().any(|h| h.controllers.contains(c)))
            .collect();
        if !controllers.is_empty() {
            out.push(Hierarchy { mount: m.mount_point.clone(), controllers });
        }
    }
    out
}

/// The needed v2 controllers listed in `dir`/cgroup.controllers (none if the
/// file is missing, as in a fixture or an old kernel).
fn controllers_in(dir: &Path) -> Result<Vec<Controller>> {
    let text = fs::read_if_exists(&dir.join("cgroup.controllers"))?.unwrap_or_default();
    let words: Vec<&str> = text.split_whitespace().collect();
    Ok(Controller::V2.into_iter().filter(|c| words.contains(&c.name())).collect())
}

fn split(wanted: &[Controller], have: impl Fn(Controller) -> bool) -> (Vec<Controller>, Vec<Controller>) {
    wanted.iter().partition(|c| have(**c))
}

fn detect_v1(config: &CgroupConfig, hierarchies: Vec<Hierarchy>, why: String) -> Result<Detection> {
    let parent = config.root.clone().unwrap_or_else(|| DEFAULT_ROOT.into());
    if !is_plain_relative(&parent) {
        return Err(CgroupError::BadRoot {
            path: parent,
            why: "on cgroup v1 the root is a path relative to each hierarchy's mount, like \"ccos\"".into(),
        });
    }
    let (available, missing) = split(&Controller::V1, |c| hierarchies.iter().any(|h| h.controllers.contains(&c)));
    Ok(Detection { mode: Mode::V1, why, layout: Layout::V1 { hierarchies, parent }, available, missing })
}

fn detect_v2(config: &CgroupConfig, mount: &CgroupMount, why: String) -> Result<Detection> {
    let base = &mount.mount_point;
    let text = fs::read(&config.proc_cgroup)?;
    let path = parse::proc_cgroup(&text)
        .and_then(|lines| {
            parse::v2_path(&lines).map(String::from).ok_or_else(|| "no \"0::\" line for cgroup v2".to_string())
        })
        .map_err(|what| CgroupError::Parse { path: config.proc_cgroup.clone(), text: text.clone(), what })?;
    // A mount that shows a subtree (root field not "/") starts at that subtree.
    let rel = Path::new(&path).strip_prefix(&mount.root).unwrap_or(Path::new(&path));
    let own = fs::under(base, &rel.to_string_lossy());

    let (runs, delegation) = match (&config.root, config.delegation) {
        (Some(root), _) => (v2_root(base, root)?, None),
        (None, DelegationChoice::Never) => (base.join(DEFAULT_ROOT), None),
        (None, choice) => {
            // A supervisor that already moved itself (or a spawner it forked)
            // sits in <subtree>/supervisor: the subtree is its parent.
            let subtree = match own.file_name() {
                Some(n) if n == "supervisor" => own.parent().unwrap_or(&own).to_owned(),
                _ => own.clone(),
            };
            let marked = xattr::delegated_by_systemd(&subtree);
            if marked || choice == DelegationChoice::Own {
                let delegation = Delegation { subtree: subtree.clone(), marked_by_systemd: marked };
                (subtree.join("runs"), Some(delegation))
            } else {
                (base.join(DEFAULT_ROOT), None)
            }
        }
    };
    // What the runs' parent can hand out is bounded by its nearest existing
    // ancestor (itself, once made).
    let offers_from = match &delegation {
        Some(d) => d.subtree.clone(),
        None => nearest_existing(&runs, base),
    };
    let offers = controllers_in(&offers_from)?;
    let (available, missing) = split(&Controller::V2, |c| offers.contains(&c));
    Ok(Detection {
        mode: Mode::V2,
        why,
        layout: Layout::V2 { mount: base.clone(), own, runs, delegation },
        available,
        missing,
    })
}

/// `--cgroup-root` on v2: absolute inside the mount, or relative to it.
fn v2_root(mount: &Path, root: &Path) -> Result<PathBuf> {
    let bad = |why: String| CgroupError::BadRoot { path: root.to_owned(), why };
    if root.is_absolute() {
        let rel =
            root.strip_prefix(mount).map_err(|_| bad(format!("not inside the cgroup2 mount {}", mount.display())))?;
        if !rel.as_os_str().is_empty() && !is_plain_relative(rel) {
            return Err(bad("must not contain \"..\"".into()));
        }
        Ok(root.to_owned())
    } else if is_plain_relative(root) {
        Ok(mount.join(root))
    } else {
        Err(bad("must not contain \"..\"".into()))
    }
}

fn is_plain_relative(p: &Path) -> bool {
    !p.as_os_str().is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

fn nearest_existing(path: &Path, stop: &Path) -> PathBuf {
    path.ancestors().take_while(|a| a.starts_with(stop)).find(|a| a.is_dir()).unwrap_or(stop).to_owned()
}

fn names(list: &[Controller]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    list.iter().map(|c| c.name()).collect::<Vec<_>>().join(" ")
}

impl fmt::Display for Detection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "mode: {} ({})", self.mode, self.why)?;
        match &self.layout {
            Layout::V1 { hierarchies, parent } => {
                writeln!(f, "root: {} on each hierarchy:", parent.display())?;
                for h in hierarchies {
                    writeln!(f, "  {}: {}", names(&h.controllers), h.mount.join(parent).display())?;
                }
                writeln!(f, "delegation: not used on v1 (groups are made under each hierarchy)")?;
            }
            Layout::V2 { own, runs, delegation, .. } => {
                writeln!(f, "root: {}", runs.display())?;
                writeln!(f, "own cgroup: {}", own.display())?;
                match delegation {
                    Some(d) => writeln!(
                        f,
                        "delegation: yes, {} ({}); this process moves into {}",
                        d.subtree.display(),
                        if d.marked_by_systemd { "systemd Delegate=yes" } else { "asked for by configuration" },
                        d.subtree.join("supervisor").display()
                    )?,
                    None => writeln!(f, "delegation: no (not in a systemd-delegated cgroup); runs go under the root")?,
                }
            }
        }
        write!(f, "controllers: {} (missing: {})", names(&self.available), names(&self.missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs as stdfs;

    fn h(mount: &str, c: &[Controller]) -> Hierarchy {
        Hierarchy { mount: mount.into(), controllers: c.to_vec() }
    }

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_mountinfo_gives_separate_cpu_and_cpuacct_hierarchies() {
        let hs = v1_hierarchies(&parse::mountinfo(HYBRID));
        use Controller::*;
        assert_eq!(
            hs,
            vec![
                h("/sys/fs/cgroup/cpu", &[Cpu]),
                h("/sys/fs/cgroup/cpuacct", &[Cpuacct]),
                h("/sys/fs/cgroup/memory", &[Memory]),
                h("/sys/fs/cgroup/freezer", &[Freezer]),
                h("/sys/fs/cgroup/pids", &[Pids]),
            ]
        );
        let m = parse::mountinfo(HYBRID);
        assert_eq!(v2_mount(&m).unwrap().mount_point, Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn a_detection_narrowed_to_some_controllers_keeps_only_their_hierarchies() {
        use Controller::*;
        let hs = v1_hierarchies(&parse::mountinfo(HYBRID));
        let d = detect_v1(&CgroupConfig::default(), hs, "test".into()).unwrap();
        let narrowed = d.with_hierarchies_of(&[Memory, Pids, Cpu]);
        let Layout::V1 { hierarchies, .. } = &narrowed.layout else { panic!("not v1: {narrowed:?}") };
        let mounts: Vec<&Path> = hierarchies.iter().map(|h| h.mount.as_path()).collect();
        assert_eq!(mounts, ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"].map(Path::new));
        assert_eq!(narrowed.available, vec![Memory, Pids, Cpu]);
        assert_eq!(narrowed.missing, d.missing, "left out is not missing");
        // A shared cpu,cpuacct hierarchy stays for either controller.
        let text = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let d = detect_v1(&CgroupConfig::default(), v1_hierarchies(&parse::mountinfo(text)), "test".into()).unwrap();
        assert_eq!(d.with_hierarchies_of(&[Cpu]), d);
    }

    #[test]
    fn combined_cpu_cpuacct_mount_is_one_hierarchy() {
        let text = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                    33 31 0:29 / /mnt/again rw - cgroup cgroup rw,cpu,cpuacct\n";
        let hs = v1_hierarchies(&parse::mountinfo(text));
        assert_eq!(hs, vec![h("/sys/fs/cgroup/cpu,cpuacct", &[Controller::Cpu, Controller::Cpuacct])]);
    }

    #[test]
    fn mode_rules() {
        let mi = Path::new("/proc/self/mountinfo");
        let v1 = vec![h("/sys/fs/cgroup/memory", &[Controller::Memory])];
        let unified = Some(Path::new("/sys/fs/cgroup"));
        let hybrid = Some(Path::new("/sys/fs/cgroup/unified"));
        let all = Controller::V2;
        // Unified: v2 even with no controllers (they would be reported missing).
        assert_eq!(choose_mode(None, unified, &[], &[], mi).unwrap().0, Mode::V2);
        // Hybrid with controllers on v2: v2.
        assert_eq!(choose_mode(None, hybrid, &all, &v1, mi).unwrap().0, Mode::V2);
        // Hybrid with controllers on v1 (this test machine): v1.
        let (mode, why) = choose_mode(None, hybrid, &[], &v1, mi).unwrap();
        assert_eq!(mode, Mode::V1);
        assert!(why.contains("lacks memory, pids or cpu"), "{why}");
        // Pure v1 and nothing at all.
        assert_eq!(choose_mode(None, None, &[], &v1, mi).unwrap().0, Mode::V1);
        let err = choose_mode(None, None, &[], &[], mi).unwrap_err().to_string();
        assert!(err.starts_with("no cgroup hierarchy is mounted (read /proc/self/mountinfo)"));
        // Forcing.
        assert_eq!(choose_mode(Some(Mode::V2), hybrid, &[], &v1, mi).unwrap().0, Mode::V2);
        assert!(choose_mode(Some(Mode::V2), None, &[], &v1, mi).is_err());
        assert!(choose_mode(Some(Mode::V1), unified, &all, &[], mi).is_err());
    }

    /// A fake host: mountinfo naming a tempdir as the cgroup2 mount.
    fn v2_fixture(proc_cgroup: &str, controllers: &str) -> (tempfile::TempDir, CgroupConfig) {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("cg");
        stdfs::create_dir(&mount).unwrap();
        stdfs::write(mount.join("cgroup.controllers"), controllers).unwrap();
        let mi = dir.path().join("mountinfo");
        stdfs::write(&mi, format!("41 31 0:38 / {} rw - cgroup2 cgroup2 rw\n", mount.display())).unwrap();
        let pc = dir.path().join("cgroup");
        stdfs::write(&pc, proc_cgroup).unwrap();
        let config = CgroupConfig { mountinfo: mi, proc_cgroup: pc, ..Default::default() };
        (dir, config)
    }

    #[test]
    fn v2_without_delegation_uses_the_default_root() {
        let (dir, config) = v2_fixture("0::/user.slice/session-1.scope\n", "cpu memory pids io\n");
        let d = detect(&config).unwrap();
        let mount = dir.path().join("cg");
        assert_eq!(d.mode, Mode::V2);
        assert!(d.why.contains("has memory, pids and cpu"), "{}", d.why);
        assert_eq!(
            d.layout,
            Layout::V2 {
                mount: mount.clone(),
                own: mount.join("user.slice/session-1.scope"),
                runs: mount.join("ccos"),
                delegation: None,
            }
        );
        assert_eq!(d.available, Controller::V2.to_vec());
        assert!(d.missing.is_empty());
        assert!(!d.delegated());
        let text = d.to_string();
        assert!(text.contains("controllers: memory pids cpu (missing: none)"), "{text}");
        assert!(text.contains("delegation: no"), "{text}");
    }

    #[test]
    fn v2_own_subtree_when_asked_and_supervisor_leaf_is_seen_through() {
        let (dir, mut config) = v2_fixture("0::/system.slice/ccos.service/supervisor\n", "memory pids\n");
        let mount = dir.path().join("cg");
        let svc = mount.join("system.slice/ccos.service");
        stdfs::create_dir_all(svc.join("supervisor")).unwrap();
        stdfs::write(svc.join("cgroup.controllers"), "memory pids\n").unwrap();
        config.delegation = DelegationChoice::Own;
        let d = detect(&config).unwrap();
        let Layout::V2 { runs, delegation, .. } = &d.layout else { panic!("{d:?}") };
        assert_eq!(runs, &svc.join("runs"));
        assert_eq!(delegation.as_ref().unwrap().subtree, svc);
        assert_eq!(d.missing, vec![Controller::Cpu]);
        assert!(d.to_string().contains("asked for by configuration"));
    }

    #[test]
    fn v2_cgroup_root_must_be_inside_the_mount() {
        let (dir, mut config) = v2_fixture("0::/\n", "");
        let mount = dir.path().join("cg");
        config.root = Some("/elsewhere".into());
        let err = detect(&config).unwrap_err().to_string();
        assert!(err.starts_with("cgroup root /elsewhere: not inside the cgroup2 mount"), "{err}");
        config.root = Some("a/../../b".into());
        assert!(detect(&config).is_err());
        config.root = Some(mount.join("machine.slice/ccos"));
        let d = detect(&config).unwrap();
        assert!(matches!(&d.layout, Layout::V2 { runs, .. } if *runs == mount.join("machine.slice/ccos")));
        // Nothing offered: all three missing, so a limit would fail by name.
        assert_eq!(d.missing, Controller::V2.to_vec());
    }

    #[test]
    fn v2_without_a_v2_line_is_a_parse_error_naming_the_file() {
        let (_dir, config) = v2_fixture("1:memory:/\n", "");
        let err = detect(&config).unwrap_err().to_string();
        assert!(err.contains("no \"0::\" line"), "{err}");
        assert!(err.contains(config.proc_cgroup.to_str().unwrap()), "{err}");
    }

    #[test]
    fn v1_detection_lists_missing_and_refuses_absolute_roots() {
        let dir = tempfile::tempdir().unwrap();
        let mi = dir.path().join("mountinfo");
        stdfs::write(
            &mi,
            "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n",
        )
        .unwrap();
        let mut config = CgroupConfig { mountinfo: mi, ..Default::default() };
        let d = detect(&config).unwrap();
        assert_eq!(d.mode, Mode::V1);
        assert_eq!(d.available, vec![Controller::Memory, Controller::Pids]);
        assert_eq!(d.missing, vec![Controller::Cpu, Controller::Cpuacct, Controller::Freezer]);
        let text = d.to_string();
        assert!(text.contains("  memory: /sys/fs/cgroup/memory/ccos"), "{text}");
        assert!(text.contains("(missing: cpu cpuacct freezer)"), "{text}");
        config.root = Some("/sys/fs/cgroup/memory/x".into());
        assert!(detect(&config).unwrap_err().to_string().contains("relative to each hierarchy's mount"));
    }
}
