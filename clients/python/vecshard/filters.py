"""vecshard.filters — typed attributes and filters (docs/filtering.md).

Attributes are a dict per point: int, float, str, bool, or a list of str
(tags). Filters take the JSON form of the docs as Python dicts, e.g.

    {"and": [{"eq": {"color": "red"}}, {"range": {"price": {"lt": 50}}}]}

with the operators and, or, not, eq, in, range (gt/gte/lt/lte), exists
("name" or {"name": False}), any and all (tags). A vecshard.v1 Filter
message is accepted as is.
"""
from vecshard.errors import InvalidArgument
from vecshard.v1 import common_pb2

_CONDITIONS = ("eq", "in", "range", "exists", "any", "all")


def value(v, where="value"):
    """An AttributeValue message of a Python value."""
    if isinstance(v, bool):
        return common_pb2.AttributeValue(bool_value=v)
    if isinstance(v, int):
        return common_pb2.AttributeValue(int_value=v)
    if isinstance(v, float):
        return common_pb2.AttributeValue(double_value=v)
    if isinstance(v, str):
        return common_pb2.AttributeValue(string_value=v)
    if isinstance(v, (list, tuple)) and all(isinstance(t, str) for t in v):
        return common_pb2.AttributeValue(tags=common_pb2.StringList(values=list(v)))
    raise InvalidArgument("%s: %r is not an int, float, str, bool or list of str" % (where, v))


def python_value(v):
    """The Python value of an AttributeValue message."""
    kind = v.WhichOneof("kind")
    if kind == "tags":
        return list(v.tags.values)
    return getattr(v, kind) if kind else None


def set_attributes(field, attrs, where="attributes"):
    """Fills a message's attributes map from a dict."""
    for k, v in (attrs or {}).items():
        field[k].CopyFrom(value(v, "%s[%r]" % (where, k)))


def attributes_dict(field):
    """A dict of a message's attributes map."""
    return {k: python_value(v) for k, v in field.items()}


def to_filter(spec, where="filter"):
    """The Filter message of a dict in the JSON form (or a Filter message)."""
    if isinstance(spec, common_pb2.Filter):
        return spec
    if not isinstance(spec, dict) or len(spec) != 1:
        raise InvalidArgument("%s: must be a dict with one operator (and, or, not, %s)"
                              % (where, ", ".join(_CONDITIONS)))
    (op, arg), = spec.items()
    sub = "%s.%s" % (where, op)
    if op in ("and", "or"):
        if not isinstance(arg, (list, tuple)):
            raise InvalidArgument("%s: must be a list of filters" % sub)
        lst = common_pb2.FilterList(filters=[to_filter(f, "%s[%d]" % (sub, i))
                                             for i, f in enumerate(arg)])
        return common_pb2.Filter(all_of=lst) if op == "and" else common_pb2.Filter(any_of=lst)
    if op == "not":
        return common_pb2.Filter(not_filter=to_filter(arg, sub))
    if op not in _CONDITIONS:
        raise InvalidArgument("%s: unknown operator %r" % (where, op))
    if op == "exists" and isinstance(arg, str):
        arg = {arg: True}
    if not isinstance(arg, dict) or len(arg) != 1:
        raise InvalidArgument("%s: takes a dict with one attribute name" % sub)
    (key, v), = arg.items()
    cond = common_pb2.Condition(key=key)
    sub = "%s.%s" % (sub, key)
    if op == "eq":
        cond.eq.CopyFrom(value(v, sub))
    elif op == "in":
        cond.in_values.CopyFrom(common_pb2.ValueList(values=[value(x, sub) for x in v]))
    elif op == "range":
        if not isinstance(v, dict) or not set(v) <= {"gt", "gte", "lt", "lte"}:
            raise InvalidArgument("%s: a range takes gt, gte, lt, lte" % sub)
        cond.range.CopyFrom(common_pb2.Range(**{b: common_pb2.Number(value=float(x))
                                                for b, x in v.items()}))
    elif op == "exists":
        cond.exists.CopyFrom(common_pb2.Exists(exists=bool(v)))
    else:
        tags = common_pb2.StringList(values=[str(t) for t in v])
        (cond.tags_any if op == "any" else cond.tags_all).CopyFrom(tags)
    return common_pb2.Filter(condition=cond)
