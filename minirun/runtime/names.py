"""Names for containers that were given none, as Docker makes them:
an adjective and the surname of someone whose work made containers
possible, e.g. `patient_thompson`. (os.urandom picks: the random module
would cost a run half a millisecond of import for a coin toss.)"""
import os

ADJECTIVES = (
    "agile", "bold", "brave", "calm", "careful", "clever", "curious", "daring", "eager",
    "earnest", "exact", "fearless", "focused", "frugal", "gentle", "happy", "honest", "humble",
    "keen", "kind", "lucid", "merry", "modest", "nimble", "patient", "plucky", "polite",
    "quiet", "quick", "serene", "sharp", "steady", "stoic", "sturdy", "swift", "tidy",
    "tireless", "upbeat", "vivid", "wise",
)

# Operating systems, isolation and the kernel pieces minirun is made of.
SURNAMES = (
    "allen", "bach", "biederman", "bonwick", "corbato", "cox", "dijkstra", "elphinstone",
    "engelbart", "feynman", "goldberg", "hamilton", "hansen", "heiser", "hoare", "hopper",
    "kamp", "karger", "kernighan", "lamport", "lampson", "liskov", "love", "mccanne",
    "mcilroy", "menage", "organick", "pike", "popek", "ritchie", "saltzer", "schroeder",
    "seltzer", "starovoitov", "tanenbaum", "thompson", "torvalds", "viro", "wheeler", "wirth",
)


def _pick(choices):
    return choices[int.from_bytes(os.urandom(4), "little") % len(choices)]


def generate(taken):
    """A name not in `taken`; after a few collisions, one with a number, as Docker does."""
    for attempt in range(10):
        name = f"{_pick(ADJECTIVES)}_{_pick(SURNAMES)}"
        if attempt > 3:
            name += _pick("0123456789")
        if name not in taken:
            return name
    return f"{name}_{int.from_bytes(os.urandom(4), 'little') % 10**6}"
