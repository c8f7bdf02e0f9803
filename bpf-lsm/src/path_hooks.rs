//! The path and mmap programs: which LSM hook each one attaches to and which
//! file operations it decides, so that only those a plan needs are attached.

use crate::abi;

/// One program of the path family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathProgram {
    /// The program's name in the object.
    pub program: &'static str,
    /// The LSM hook (`bpf_lsm_<hook>` in the kernel's BTF).
    pub hook: &'static str,
    /// `plan::ops` bits it decides.
    pub ops: u32,
    /// Not every supported kernel has the hook: attach only where its BTF
    /// has it (`file_truncate` is Linux 6.2+; before, `path_truncate` sees
    /// ftruncate and open(O_TRUNC) too).
    pub optional: bool,
}

const fn p(program: &'static str, hook: &'static str, ops: u32) -> PathProgram {
    PathProgram {
        program,
        hook,
        ops,
        optional: false,
    }
}

/// A chmod, plain or setting setuid or setgid.
const CHMOD_OPS: u32 = abi::OP_CHMOD | abi::OP_CHMOD_SETUID | abi::OP_CHMOD_SETGID;

/// Every path and mmap program, in attach order.
pub const PATH_PROGRAMS: &[PathProgram] = &[
    // open(O_CREAT) of a new file goes through path_mknod (may_o_create).
    p("enf_path_mknod", "path_mknod", abi::OP_CREATE),
    p("enf_path_mkdir", "path_mkdir", abi::OP_CREATE),
    p(
        "enf_path_symlink",
        "path_symlink",
        abi::OP_CREATE | abi::OP_LINK | abi::OP_SYMLINK_TO,
    ),
    p("enf_path_unlink", "path_unlink", abi::OP_DELETE),
    p("enf_path_rmdir", "path_rmdir", abi::OP_DELETE),
    p("enf_path_rename", "path_rename", abi::OP_RENAME),
    p("enf_path_link", "path_link", abi::OP_LINK),
    p("enf_path_chmod", "path_chmod", CHMOD_OPS),
    p("enf_path_chown", "path_chown", abi::OP_CHOWN),
    p("enf_path_truncate", "path_truncate", abi::OP_TRUNCATE),
    PathProgram {
        program: "enf_file_truncate",
        hook: "file_truncate",
        ops: abi::OP_TRUNCATE,
        optional: true,
    },
    p("enf_mmap_file", "mmap_file", abi::OP_MMAP_EXEC),
    p("enf_file_mprotect", "file_mprotect", abi::OP_MMAP_EXEC),
];

/// The file operations decided by the path and mmap programs.
pub const PATH_OPS: u32 = abi::OP_CREATE
    | abi::OP_DELETE
    | abi::OP_RENAME
    | abi::OP_LINK
    | abi::OP_SYMLINK_TO
    | CHMOD_OPS
    | abi::OP_CHOWN
    | abi::OP_TRUNCATE
    | abi::OP_MMAP_EXEC;

/// The programs that decide any of `ops`, those of optional hooks only when
/// `kernel_has(hook)` says the running kernel has them.
pub fn programs_for(ops: u32, kernel_has: impl Fn(&str) -> bool) -> Vec<PathProgram> {
    PATH_PROGRAMS
        .iter()
        .filter(|p| p.ops & ops != 0)
        .filter(|p| !p.optional || kernel_has(p.hook))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[PathProgram]) -> Vec<&str> {
        v.iter().map(|p| p.hook).collect()
    }

    #[test]
    fn only_the_hooks_of_the_ops_asked_for() {
        assert!(programs_for(abi::OP_READ | abi::OP_WRITE, |_| true).is_empty());
        assert_eq!(
            names(&programs_for(abi::OP_CREATE, |_| true)),
            vec!["path_mknod", "path_mkdir", "path_symlink"]
        );
        assert_eq!(
            names(&programs_for(abi::OP_LINK, |_| true)),
            vec!["path_symlink", "path_link"]
        );
        assert_eq!(
            names(&programs_for(abi::OP_MMAP_EXEC, |_| true)),
            vec!["mmap_file", "file_mprotect"]
        );
        assert_eq!(
            names(&programs_for(abi::OP_CHMOD_SETUID, |_| true)),
            vec!["path_chmod"]
        );
        assert_eq!(
            names(&programs_for(abi::OP_SYMLINK_TO, |_| true)),
            vec!["path_symlink"]
        );
    }

    #[test]
    fn file_truncate_only_where_the_kernel_has_it() {
        assert_eq!(
            names(&programs_for(abi::OP_TRUNCATE, |_| true)),
            vec!["path_truncate", "file_truncate"]
        );
        assert_eq!(
            names(&programs_for(abi::OP_TRUNCATE, |h| h != "file_truncate")),
            vec!["path_truncate"]
        );
    }

    #[test]
    fn every_path_op_has_a_program() {
        let covered = PATH_PROGRAMS.iter().fold(0, |m, p| m | p.ops);
        assert_eq!(covered, PATH_OPS);
    }
}
