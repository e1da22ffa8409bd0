"""seccomp-bpf: a filter the kernel runs at each system call a process makes,
deciding from its number and arguments whether it proceeds — seccomp(2).

The filter is classic BPF (the packet filter's instruction set) over
struct seccomp_data {nr, arch, instruction_pointer, args[6]}. We do not
write it by hand: libseccomp (through pyseccomp, a ctypes binding) turns
rules like "allow socket() when arg0 != 40" into that program, checks the
architecture, and sorts the syscalls into a quick search. compile_program()
asks it for the raw program once; load() hands those bytes to the kernel,
which costs one system call and no libseccomp at all.
"""
import os

from minirun.errors import MinirunError
from minirun.linux.syscalls import seccomp_set_filter

OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
       "SCMP_CMP_MASKED_EQ")
ACTIONS = ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
           "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_LOG", "SCMP_ACT_TRACE")


def _action(lib, name, errno_ret):
    return {"SCMP_ACT_ALLOW": lambda: lib.ALLOW,
            "SCMP_ACT_ERRNO": lambda: lib.ERRNO(errno_ret),
            "SCMP_ACT_KILL": lambda: lib.KILL_THREAD,
            "SCMP_ACT_KILL_THREAD": lambda: lib.KILL_THREAD,
            "SCMP_ACT_KILL_PROCESS": lambda: lib.KILL_PROCESS,
            "SCMP_ACT_TRAP": lambda: lib.TRAP,
            "SCMP_ACT_LOG": lambda: lib.LOG,
            "SCMP_ACT_TRACE": lambda: lib.TRACE(errno_ret)}[name]()


def compile_program(default, arches, rules):
    """The BPF program (bytes) for `default` (action, errno) and `rules`:
    [(action, errno, syscall name, [(arg index, op, value, value_two)...])].
    A syscall this libseccomp does not know is left out, as Docker does."""
    import pyseccomp as lib
    arch_numbers = {"SCMP_ARCH_X86_64": lib.Arch.X86_64, "SCMP_ARCH_X86": lib.Arch.X86,
                    "SCMP_ARCH_X32": lib.Arch.X32, "SCMP_ARCH_AARCH64": lib.Arch.AARCH64,
                    "SCMP_ARCH_ARM": lib.Arch.ARM}
    ops = {"SCMP_CMP_NE": lib.NE, "SCMP_CMP_LT": lib.LT, "SCMP_CMP_LE": lib.LE,
           "SCMP_CMP_EQ": lib.EQ, "SCMP_CMP_GE": lib.GE, "SCMP_CMP_GT": lib.GT,
           "SCMP_CMP_MASKED_EQ": lib.MASKED_EQ}
    f = lib.SyscallFilter(_action(lib, *default))
    for arch in arches:
        if arch_numbers[arch] != lib.system_arch():
            f.add_arch(arch_numbers[arch])
    for action, errno_ret, name, args in rules:
        try:
            f.add_rule(_action(lib, action, errno_ret), name,
                       *[lib.Arg(i, ops[op], a, b) for i, op, a, b in args])
        except (ValueError, OSError, RuntimeError):
            continue        # unknown here, or the same as the default action
    fd = os.memfd_create("seccomp-bpf")
    try:
        with os.fdopen(os.dup(fd), "wb") as out:
            f.export_bpf(out)
        return os.pread(fd, 1 << 20, 0)
    finally:
        os.close(fd)


def load(program, rule_count, profile):
    """Install the program: from here to the end of the process (and its
    children), every system call passes through it."""
    if not program or len(program) % 8:
        raise MinirunError(f"seccomp profile {profile}: the compiled filter is damaged")
    seccomp_set_filter(program, f"seccomp(SECCOMP_SET_MODE_FILTER, {len(program) // 8} BPF "
                                f"instructions: {rule_count} rules of profile {profile})")
