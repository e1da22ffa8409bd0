"""Device control on cgroup v2: a tiny eBPF program, written out by hand.

cgroup v1 has a `devices` controller that takes rules as text ("c 1:3 rwm").
cgroup v2 has none. Instead, the kernel runs a BPF_PROG_TYPE_CGROUP_DEVICE
program attached to the cgroup every time one of its processes opens or
makes (mknod) a device node; the program returns 1 to allow, 0 to deny
(EPERM). See bpf(2) and the kernel's Documentation/bpf/prog_cgroup_device.

The program receives a pointer (register r1) to this struct:

    struct bpf_cgroup_dev_ctx {
        u32 access_type;   /* (access << 16) | type */
        u32 major;
        u32 minor;
    };

    type:   BPF_DEVCG_DEV_BLOCK = 1, BPF_DEVCG_DEV_CHAR = 2
    access: BPF_DEVCG_ACC_MKNOD = 1, BPF_DEVCG_ACC_READ = 2, BPF_DEVCG_ACC_WRITE = 4

The program we build, for the rule list [c 1:3 rw, ...]:

     0  r2 = *(u32 *)(r1 + 0)        access_type
     1  r2 &= 0xffff                 r2 = type
     2  r3 = *(u32 *)(r1 + 0)
     3  r3 >>= 16                    r3 = access asked for
     4  r4 = *(u32 *)(r1 + 4)        r4 = major
     5  r5 = *(u32 *)(r1 + 8)        r5 = minor
        then, per rule:
        if r2 != TYPE goto next      (left out for type 'a')
        r0 = r3
        r0 &= ~ACCESS                what was asked but not allowed...
        if r0 != 0 goto next         ...must be nothing
        if r4 != MAJOR goto next     (left out for major '*')
        if r5 != MINOR goto next     (left out for minor '*')
        r0 = 1; exit                 allowed
      next:
        ...
        r0 = 0; exit                 nothing matched: denied

Each instruction is 8 bytes: an opcode, two 4-bit registers, a 16-bit jump
offset and a 32-bit immediate (struct bpf_insn in <linux/bpf.h>).
"""
import ctypes
import os
import struct

from minirun.linux import explain
from minirun.linux.syscalls import bpf

# Opcodes (<linux/bpf_common.h>, <linux/bpf.h>): class | operation | source.
LDX_MEM_W = 0x61      # BPF_LDX | BPF_MEM | BPF_W:  dst = *(u32 *)(src + off)
ALU_AND_K = 0x54      # BPF_ALU | BPF_AND | BPF_K:  dst &= imm   (32-bit)
ALU_RSH_K = 0x74      # BPF_ALU | BPF_RSH | BPF_K:  dst >>= imm
ALU_MOV_X = 0xbc      # BPF_ALU | BPF_MOV | BPF_X:  dst = src
ALU64_MOV_K = 0xb7    # BPF_ALU64 | BPF_MOV | BPF_K: dst = imm
JMP_JNE_K = 0x55      # BPF_JMP | BPF_JNE | BPF_K:  if dst != imm: pc += off
JMP_EXIT = 0x95       # BPF_JMP | BPF_EXIT:         return r0

DEV_TYPE = {"b": 1, "c": 2}
ACCESS = {"m": 1, "r": 2, "w": 4}

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6


def insn(code, dst=0, src=0, off=0, imm=0):
    """One struct bpf_insn."""
    return struct.pack("<BBhi", code, dst | (src << 4), off, imm)


def rule_block(rule):
    """The instructions for one allow rule; every `goto next` jumps past the block."""
    checks = []
    if rule.type != "a":
        checks.append([(JMP_JNE_K, 2, 0, DEV_TYPE[rule.type])])
    allowed = sum(ACCESS[a] for a in rule.access)
    checks.append([(ALU_MOV_X, 0, 3, 0), (ALU_AND_K, 0, 0, ~allowed & 0xffff),
                   (JMP_JNE_K, 0, 0, 0)])
    if rule.major is not None:
        checks.append([(JMP_JNE_K, 4, 0, rule.major)])
    if rule.minor is not None:
        checks.append([(JMP_JNE_K, 5, 0, rule.minor)])
    body = [i for group in checks for i in group] + [(ALU64_MOV_K, 0, 0, 1), (JMP_EXIT, 0, 0, 0)]
    out = []
    for n, (code, dst, src, imm) in enumerate(body):
        off = len(body) - n - 1 if code == JMP_JNE_K else 0   # to the first insn after the block
        out.append(insn(code, dst, src, off, imm))
    return out


def program(rules):
    """The whole program for an allow-list of DeviceRules (see the docstring)."""
    prologue = [insn(LDX_MEM_W, 2, 1, 0), insn(ALU_AND_K, 2, 0, 0, 0xffff),
                insn(LDX_MEM_W, 3, 1, 0), insn(ALU_RSH_K, 3, 0, 0, 16),
                insn(LDX_MEM_W, 4, 1, 4), insn(LDX_MEM_W, 5, 1, 8)]
    blocks = [i for rule in rules for i in rule_block(rule)]
    return prologue + blocks + [insn(ALU64_MOV_K, 0, 0, 0, 0), insn(JMP_EXIT)]


def load(insns):
    """BPF_PROG_LOAD: hand the program to the kernel's verifier; returns its fd."""
    code = ctypes.create_string_buffer(b"".join(insns))
    license = ctypes.create_string_buffer(b"Apache-2.0")
    log = ctypes.create_string_buffer(65536)
    attr = bytearray(128)            # union bpf_attr, the BPF_PROG_LOAD part
    struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(insns),
                     ctypes.addressof(code), ctypes.addressof(license), 1, len(log),
                     ctypes.addressof(log))
    attr[48:48 + 15] = b"minirun_devices"
    return bpf(BPF_PROG_LOAD, attr, f"bpf(BPF_PROG_LOAD, CGROUP_DEVICE, {len(insns)} instructions)")


def attach(cgroup_dir, rules):
    """Load the program for `rules` and attach it to the cgroup at `cgroup_dir`.
    The cgroup holds a reference to it: our file descriptors can go."""
    for rule in rules:
        explain.step(f"allow {rule}", "bpf(2)")
    prog = load(program(rules))
    target = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        attr = bytearray(struct.pack("<IIII", target, prog, BPF_CGROUP_DEVICE, 0)) + bytes(112)
        bpf(BPF_PROG_ATTACH, attr, f'bpf(BPF_PROG_ATTACH, "{cgroup_dir}", BPF_CGROUP_DEVICE)')
    finally:
        os.close(target)
        os.close(prog)
