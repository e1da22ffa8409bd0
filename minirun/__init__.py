"""minirun: a container runtime built from the kernel's own parts, written to be read."""
