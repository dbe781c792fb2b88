//! The architectures berth can compile filters for and their syscall tables.

use oci_spec::runtime::Arch;

use crate::Error;

/// `AUDIT_ARCH_X86_64` (EM_X86_64 | 64BIT | LE): seccomp_data.arch of x86_64 and x32 calls.
pub(crate) const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386` (EM_386 | LE): seccomp_data.arch of `int 0x80` and 32-bit processes.
pub(crate) const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// x32 syscalls share AUDIT_ARCH_X86_64 and differ only by this bit in the syscall number.
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

mod tables {
    include!(concat!(env!("OUT_DIR"), "/syscall_tables.rs"));
}

/// One ABI we have a syscall table for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Target {
    X86_64,
    X86,
    X32,
}

impl Target {
    /// Maps an OCI architecture to a target; `SCMP_ARCH_NATIVE` is the build's own ABI.
    pub(crate) fn from_oci(arch: Arch) -> Result<Self, Error> {
        match arch {
            Arch::ScmpArchX86_64 => Ok(Target::X86_64),
            Arch::ScmpArchX86 => Ok(Target::X86),
            Arch::ScmpArchX32 => Ok(Target::X32),
            Arch::ScmpArchNative => Self::native().ok_or_else(|| Error::UnsupportedArch {
                arch: arch.to_string(),
            }),
            other => Err(Error::UnsupportedArch {
                arch: other.to_string(),
            }),
        }
    }

    /// The ABI this crate was built for, if it is one we have a table for.
    pub(crate) fn native() -> Option<Self> {
        if cfg!(all(target_arch = "x86_64", target_pointer_width = "64")) {
            Some(Target::X86_64)
        } else if cfg!(all(target_arch = "x86_64", target_pointer_width = "32")) {
            Some(Target::X32)
        } else if cfg!(target_arch = "x86") {
            Some(Target::X86)
        } else {
            None
        }
    }

    pub(crate) fn oci_name(self) -> &'static str {
        match self {
            Target::X86_64 => "SCMP_ARCH_X86_64",
            Target::X86 => "SCMP_ARCH_X86",
            Target::X32 => "SCMP_ARCH_X32",
        }
    }

    fn table(self) -> &'static [(&'static str, u32)] {
        match self {
            Target::X86_64 => tables::X86_64,
            Target::X86 => tables::X86,
            Target::X32 => tables::X32,
        }
    }

    /// The syscall number of `name` on this ABI (x32 numbers include `X32_SYSCALL_BIT`).
    pub(crate) fn syscall_nr(self, name: &str) -> Option<u32> {
        let table = self.table();
        table
            .binary_search_by(|(n, _)| (*n).cmp(name))
            .ok()
            .map(|i| table[i].1)
    }

    /// The name of syscall `nr` (linear scan; tests only).
    #[cfg(test)]
    pub(crate) fn name_of(self, nr: u32) -> Option<&'static str> {
        self.table()
            .iter()
            .find(|(_, n)| *n == nr)
            .map(|(name, _)| *name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_the_kernel_abi() {
        assert_eq!(Target::X86_64.syscall_nr("read"), Some(0));
        assert_eq!(Target::X86_64.syscall_nr("getppid"), Some(110));
        assert_eq!(Target::X86_64.syscall_nr("seccomp"), Some(317));
        assert_eq!(Target::X86.syscall_nr("getpid"), Some(20));
        assert_eq!(Target::X86.syscall_nr("socketcall"), Some(102));
        assert_eq!(Target::X32.syscall_nr("getpid"), Some(X32_SYSCALL_BIT + 39));
        assert_eq!(
            Target::X32.syscall_nr("rt_sigaction"),
            Some(X32_SYSCALL_BIT + 512)
        );
        assert_eq!(Target::X86_64.syscall_nr("socketcall"), None);
        assert_eq!(Target::X86_64.syscall_nr("no_such_syscall"), None);
    }

    #[test]
    fn foreign_arch_is_an_error_naming_it() {
        let err = Target::from_oci(Arch::ScmpArchAarch64).unwrap_err();
        assert!(err.to_string().contains("SCMP_ARCH_AARCH64"), "{err}");
        assert_eq!(
            Target::from_oci(Arch::ScmpArchNative).unwrap(),
            Target::X86_64
        );
    }
}
