"""Capabilities and process attributes set through prctl(2), via python-prctl.

See capabilities(7): root's power is split into ~40 capabilities. A container
keeps a few (Docker's default set) and loses the rest from all its sets,
including the bounding set, so not even a setuid binary can win them back.
"""
import functools

import prctl

from minirun.linux import explain


@functools.cache
def last_cap():
    """The highest capability number this kernel knows, read once (the
    container's own /proc may not be there to ask later)."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


_NUMBERS = {name.upper(): number for name, number in zip(prctl.ALL_CAP_NAMES, prctl.ALL_CAPS)}
# python-prctl predates CAP_CHECKPOINT_RESTORE (Linux 5.9): it calls 40 "last_cap".
if _NUMBERS.pop("LAST_CAP", None) == 40:
    _NUMBERS["CHECKPOINT_RESTORE"] = 40
_NAMES = {number: name for name, number in _NUMBERS.items()}


def cap_number(name):
    """'NET_ADMIN' or 'CAP_NET_ADMIN' → its number; KeyError if unknown."""
    name = name.upper()
    return _NUMBERS[name[4:] if name.startswith("CAP_") else name]


def cap_name(number):
    """12 → 'NET_ADMIN'."""
    return _NAMES.get(number, str(number))


def bounding_set():
    """The capability numbers this process could still hold — capabilities(7)."""
    return {n for n in range(last_cap() + 1) if prctl.capbset_read(n)}


def drop_bounding_set(keep):
    """Remove every capability not in `keep` from the bounding set, so no
    execve (not even of a setuid binary) can ever regain it — PR_CAPBSET_DROP."""
    drop = [n for n in range(last_cap() + 1) if n not in keep]
    explain.step(f"prctl(PR_CAPBSET_DROP, cap) for {len(drop)} capabilities", "prctl(2)")
    for n in drop:
        prctl.capbset_drop(n)


def limit_capabilities(keep):
    """Cut the permitted and effective sets to `keep`; empty the inheritable
    set — capset(2)."""
    everything = range(last_cap() + 1)
    drop = [n for n in everything if n not in keep]
    explain.step(f"capset(effective=permitted={{{len(keep)} caps}}, inheritable={{}})", "capset(2)")
    prctl.set_caps((drop, [prctl.CAP_EFFECTIVE, prctl.CAP_PERMITTED], False),
                   (list(everything), prctl.CAP_INHERITABLE, False))


def keep_capabilities_across_setuid():
    """Keep the permitted set when setuid(2) leaves uid 0, so a non-root
    user can be given capabilities after — PR_SET_KEEPCAPS."""
    explain.step("prctl(PR_SET_KEEPCAPS, 1)", "prctl(2)")
    prctl.set_keepcaps(True)


def set_capability_sets(effective, permitted, inheritable, ambient):
    """Each set exactly as given (numbers), the ambient set last since it
    needs its capabilities permitted and inheritable first — capset(2),
    prctl(2) PR_CAP_AMBIENT."""
    from minirun.linux.syscalls import cap_ambient_raise
    everything = range(last_cap() + 1)
    explain.step(f"capset(effective={{{len(effective)}}}, permitted={{{len(permitted)}}}, "
                 f"inheritable={{{len(inheritable)}}})", "capset(2)")
    prctl.set_caps(([n for n in everything if n in permitted], prctl.CAP_PERMITTED, True),
                   ([n for n in everything if n not in permitted], prctl.CAP_PERMITTED, False),
                   ([n for n in everything if n in effective], prctl.CAP_EFFECTIVE, True),
                   ([n for n in everything if n not in effective], prctl.CAP_EFFECTIVE, False),
                   ([n for n in everything if n in inheritable], prctl.CAP_INHERITABLE, True),
                   ([n for n in everything if n not in inheritable], prctl.CAP_INHERITABLE, False))
    # The kernel keeps an ambient capability only if it is permitted and
    # inheritable too (capabilities(7)); like runc, raise those and skip the rest.
    for n in sorted(set(ambient) & set(permitted) & set(inheritable)):
        cap_ambient_raise(n)


def set_no_new_privs():
    """execve can never grant more privileges (setuid bits, file caps) — PR_SET_NO_NEW_PRIVS."""
    explain.step("prctl(PR_SET_NO_NEW_PRIVS, 1)", "prctl(2)")
    prctl.set_no_new_privs(True)


def set_parent_death_signal(signum):
    """Have the kernel send `signum` to us when our parent dies — PR_SET_PDEATHSIG."""
    explain.step(f"prctl(PR_SET_PDEATHSIG, {signum})", "prctl(2)")
    prctl.set_pdeathsig(signum)
