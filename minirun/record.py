"""Record: a class of named fields, declared as for @dataclass, for the
classes every container start goes through (the ContainerSpec and its
parts, RunOptions, Image...).

    class Mount(Record):
        type: str                         # a field without a default
        target: str
        readonly: bool = False            # a default
        flags: list[str] = Factory(list)  # a new list for each record

Why not @dataclass: it writes the source of an __init__ (and __repr__,
__eq__) for each class and compiles it when the module is imported, about
half a millisecond a class. `minirun run` imports twenty such classes
before it does anything, which was a third of runc's whole start. Here one
__init__, written once, reads the fields each class declares. Records
compare by identity, as plain objects do.
"""
_MISSING = object()


class Factory:
    """A default made anew for each record (a dataclass's default_factory):
    a list or dict default must not be shared between records."""

    def __init__(self, make):
        self.make = make


class Record:
    _fields = ()      # the annotated names, the bases' first: __init__'s order

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        names = [name for klass in reversed(cls.__mro__)
                 for name in vars(klass).get("__annotations__", {})]
        cls._fields = tuple(dict.fromkeys(names))

    def __init__(self, *args, **kwargs):
        kind = type(self).__name__
        if len(args) > len(self._fields):
            raise TypeError(f"{kind} takes {len(self._fields)} fields, {len(args)} given")
        values = dict(zip(self._fields, args))
        for name, value in kwargs.items():
            if name not in self._fields or name in values:
                raise TypeError(f"{kind}: unknown or repeated field {name!r}")
            values[name] = value
        for name in self._fields:
            value = values.get(name, _MISSING)
            if value is _MISSING:
                value = getattr(type(self), name, _MISSING)
                if value is _MISSING:
                    raise TypeError(f"{kind}: field {name!r} is missing")
                if isinstance(value, Factory):
                    value = value.make()
            setattr(self, name, value)

    def __repr__(self):
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"


def to_dict(value):
    """A record as plain data (dicts, lists, tuples), records inside it
    too: what json.dumps writes (as dataclasses.asdict)."""
    if isinstance(value, Record):
        return {name: to_dict(getattr(value, name)) for name in value._fields}
    if isinstance(value, (list, tuple)):
        return type(value)(to_dict(v) for v in value)
    if isinstance(value, dict):
        return {k: to_dict(v) for k, v in value.items()}
    return value


def replace(record, **changes):
    """A copy of `record` with some fields changed (as dataclasses.replace)."""
    import copy
    new = copy.copy(record)
    for name, value in changes.items():
        if name not in record._fields:
            raise TypeError(f"{type(record).__name__}: unknown field {name!r}")
        setattr(new, name, value)
    return new
