"""Names for containers that were given none, as Docker makes them:
an adjective and the surname of someone whose work made containers
possible, e.g. `patient_thompson`."""
import random

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


def generate(taken, rng=random):
    """A name not in `taken`; after a few collisions, one with a number, as Docker does."""
    for attempt in range(10):
        name = f"{rng.choice(ADJECTIVES)}_{rng.choice(SURNAMES)}"
        if attempt > 3:
            name += str(rng.randint(0, 9))
        if name not in taken:
            return name
    return f"{name}_{rng.randint(10, 10**6)}"
