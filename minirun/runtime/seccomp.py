"""Which system calls a container may make.

A profile is a JSON file in Docker's format (ours is seccomp-default.json,
beside this file, with Docker's semantics; `--security-opt seccomp=FILE`
takes Docker's own). For one container it is narrowed to what applies:
entries whose `includes`/`excludes` name capabilities the container does or
does not hold, and this machine's architectures. The BPF program for that
(profile, capabilities, machine) is compiled by libseccomp once and kept in
the store (<root>/seccomp/<profile>-<machine>-caps<mask>.bpf): a container's
start only reads it and hands it to the kernel, last thing before execve
(child.become_program).
"""
import json
import os
from minirun.errors import UsageError
from minirun.runtime.spec import SeccompFilter

DEFAULT_PROFILE = os.path.join(os.path.dirname(__file__), "seccomp-default.json")

# Go's architecture names, as Docker's `includes.arches` use them.
GO_ARCH = {"SCMP_ARCH_X86_64": "amd64", "SCMP_ARCH_X86": "x86", "SCMP_ARCH_X32": "x32",
           "SCMP_ARCH_AARCH64": "arm64", "SCMP_ARCH_ARM": "arm"}
NATIVE = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}


def parse_security_opts(values):
    """--security-opt: seccomp=unconfined|PROFILE.json and no-new-privileges
    (always on here). Returns the seccomp choice: None (the default),
    'unconfined', or a path."""
    choice = None
    for value in values:
        key, sep, arg = value.partition("=" if "=" in value else ":")
        if key == "seccomp" and arg:
            choice = arg if arg == "unconfined" else os.path.abspath(arg)
        elif key == "no-new-privileges" and arg in ("", "true"):
            continue
        elif key in ("apparmor", "label"):
            raise UsageError(f"--security-opt {value}: minirun has no {key} support on this host")
        else:
            raise UsageError(f"--security-opt {value}: want seccomp=unconfined, "
                             f"seccomp=PROFILE.json or no-new-privileges")
    return choice


def prepare(store_root, choice, capabilities):
    """The filter for a container, compiled if the store has not got it yet;
    None when unconfined. Bad profiles are refused here, before any fork."""
    if choice == "unconfined":
        return None
    path = DEFAULT_PROFILE if choice is None else choice
    name = "default" if choice is None else path
    try:
        with open(path, "rb") as f:
            text = f.read()
            st = os.fstat(f.fileno())
        profile = json.loads(text)
    except OSError as e:
        raise UsageError(f"seccomp profile {path}: {e.strerror}") from None
    except ValueError as e:
        raise UsageError(f"seccomp profile {path}: not valid JSON: {e}") from None
    # Ours changes only when minirun is installed again: its size and mtime
    # name it, and a run does without hashlib (4 ms to import). A user's
    # profile is named by its content.
    identity = f"default-{st.st_size}-{st.st_mtime_ns}" if choice is None else content_name(text)
    return compile_profile(profile, identity, name, capabilities, os.path.join(store_root, "seccomp"))


def content_name(text):
    import hashlib
    return "sha256-" + hashlib.sha256(text).hexdigest()


def compile_profile(profile, identity, name, capabilities, directory):
    """The BPF program of a parsed `profile` (`identity` names its content)
    for a container holding `capabilities`, kept in `directory` under a
    name made of all three and the machine, so each is compiled once."""
    from minirun.linux.caps import cap_number
    caps = {c if c.startswith("CAP_") else "CAP_" + c for c in capabilities}
    default, arches, rules = rules_for(profile, caps, name)
    check_execve_allowed(default, rules, name)
    mask = sum(1 << cap_number(c) for c in caps)
    program = os.path.join(directory, f"{identity}-{os.uname().machine}-caps{mask:x}.bpf")
    size = os.path.getsize(program) if os.path.exists(program) else 0
    if size == 0 or size % 8:          # not there yet, or damaged: compile it (again)
        from minirun.linux.files import write_atomic
        from minirun.linux.seccomp import compile_program
        os.makedirs(directory, exist_ok=True)
        write_atomic(program, compile_program(default, arches, rules))
    return SeccompFilter(name, program, len(rules))


def rules_for(profile, caps, name):
    """(default action, architectures, [(action, errno, syscall, args)]) of
    `profile` for a container holding `caps` on this machine."""
    from minirun.linux.seccomp import ACTIONS, OPS
    if not isinstance(profile, dict) or not isinstance(profile.get("syscalls", []), list):
        raise UsageError(f"seccomp profile {name}: not a profile (want defaultAction and syscalls)")
    errno_default = profile.get("defaultErrnoRet", 1)
    default = (profile.get("defaultAction"), errno_default)
    if default[0] not in ACTIONS:
        raise UsageError(f"seccomp profile {name}: unknown defaultAction {default[0]!r}")
    native = NATIVE.get(os.uname().machine)
    arches = [native] if native else []
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            arches += entry.get("subArchitectures") or []
    arches += [a for a in profile.get("architectures") or [] if a not in arches]
    arches = [a for a in arches if a in GO_ARCH]
    go_arches = {GO_ARCH[a] for a in arches}
    rules = []
    for n, entry in enumerate(profile.get("syscalls") or []):
        where = f"seccomp profile {name}: syscalls[{n}]"
        action = entry.get("action")
        if action not in ACTIONS:
            raise UsageError(f"{where}: unknown action {action!r}")
        if not applies(entry, caps, go_arches):
            continue
        args = []
        for a in entry.get("args") or []:
            if a.get("op") not in OPS or not isinstance(a.get("index"), int):
                raise UsageError(f"{where}: bad argument rule {a}")
            args.append((a["index"], a["op"], a.get("value", 0), a.get("valueTwo", 0)))
        errno_ret = entry.get("errnoRet", errno_default if action == "SCMP_ACT_ERRNO" else 0)
        names = entry.get("names") or ([entry["name"]] if entry.get("name") else [])
        for syscall in names:
            # Docker's rule: the same argument twice means either (one rule
            # each); different arguments must all match (one rule).
            indexes = [a[0] for a in args]
            groups = [[a] for a in args] if len(set(indexes)) < len(indexes) else [args]
            rules += [(action, errno_ret, syscall, group) for group in groups]
    return default, arches, rules


def applies(entry, caps, go_arches):
    """Docker's includes/excludes: every listed capability held, an
    architecture of ours listed; excludes the reverse."""
    inc, exc = entry.get("includes") or {}, entry.get("excludes") or {}
    if inc.get("caps") and not set(inc["caps"]) <= caps:
        return False
    if inc.get("arches") and not set(inc["arches"]) & go_arches:
        return False
    if exc.get("caps") and set(exc["caps"]) & caps:
        return False
    if exc.get("arches") and set(exc["arches"]) & go_arches:
        return False
    return True


def check_execve_allowed(default, rules, name):
    """A profile that blocks execve(2) itself could never start the program:
    refuse it with a clear line instead of a container that cannot run."""
    execve = [r for r in rules if r[2] == "execve"]
    blocked = any(action != "SCMP_ACT_ALLOW" and not args for action, _, _, args in execve)
    allowed = any(action == "SCMP_ACT_ALLOW" and not args for action, _, _, args in execve)
    if blocked or (default[0] != "SCMP_ACT_ALLOW" and not allowed):
        raise UsageError(f"seccomp profile {name} blocks execve(2): the container's program "
                         f"could never start; allow execve in the profile")
