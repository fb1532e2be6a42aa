"""Which format an answer gets: `?format=`, else the Accept header weighed by its q-values, else the default;
always one that can hold the image's size (service.codecs.limits), settled before the upload is queued.

- `?format=` wins. If that format cannot hold the image: 422, naming the limit and the formats that can.
- Accept (RFC 9110, section 12.5.1): each written format takes the q-value of the most specific range that
  matches it (`image/webp` over `image/*` over `*/*`; a range is any spelling service.codecs.formats knows). The
  answer is the acceptable format (q > 0) with the highest q; ties go to a named format over a wildcard, then to
  the one named first, then to the default order. `q=0` refuses a format: `image/jpeg;q=0` never gets JPEG.
  If none of the acceptable formats can hold the image: 406, naming the limits and the formats that can.
- An Accept header that accepts no format this service writes (absent, `application/json`, only `q=0`
  refusals) is disregarded, as RFC 9110 allows, except for its refusals: the default among the formats it does
  not refuse; 406 if it refuses them all.
- The default: the upload's own format (service.codecs.formats.same_format), else PNG, which holds every size,
  else the other written formats in their usual order.
"""

from service.codecs.formats import MEDIA_TYPES, WRITTEN, known_format, same_format
from service.codecs.imaging import ImageError
from service.codecs.limits import fits, limit_text

WILDCARDS = {"*/*": 0, "*": 0, "image/*": 1}  # range -> specificity; a named format's is 2
NAMED = 2


def qvalue(parameters: list[str]) -> float | None:
    """The q of a range's parameters (1 without one); None when it is not a valid qvalue (0 to 1, up to 3
    decimals), which leaves the range out."""
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            value = value.strip()
            try:
                q = float(value)
            except ValueError:
                return None
            whole, _, decimals = value.partition(".")
            valid = whole in ("0", "1") and len(decimals) <= 3 and (not decimals or decimals.isdigit())
            return q if valid and 0 <= q <= 1 else None
    return 1.0


def preferences(accept: str) -> dict[str, tuple[float, int, int]]:
    """Each written format some range of `accept` matches -> (q, specificity, position) of the most specific
    one (the first of those, if several)."""
    found: dict[str, tuple[float, int, int]] = {}
    for position, part in enumerate(accept.split(",")):
        media, *parameters = part.split(";")
        media = media.strip().lower()
        q = qvalue(parameters)
        if q is None or not media:
            continue
        if media in WILDCARDS:
            names, specificity = list(MEDIA_TYPES), WILDCARDS[media]
        elif (name := known_format(media)) in MEDIA_TYPES:
            names, specificity = [name], NAMED
        else:
            continue
        for name in names:
            if name not in found or specificity > found[name][1]:
                found[name] = (q, specificity, position)
    return found


def default_order(source_format: str) -> list[str]:
    return list(dict.fromkeys([same_format(source_format), "png", *WRITTEN]))


def fitting(width: int, height: int) -> str:
    return ", ".join(name for name in WRITTEN if fits(name, width, height))


def choose_format(asked: str | None, accept: str | None, source_format: str, width: int, height: int) -> str:
    """The answer format for a `width` x `height` upload in Pillow's format `source_format`: `asked` (?format=,
    through service.codecs.formats.format_named), else by `accept`, else the default (the module's docstring).

    Raises ImageError: 422 when `asked` cannot hold the image, 406 when Accept leaves no format that can.
    """
    size = f"this image is {width}x{height}; formats that hold it: {fitting(width, height)}"
    if asked is not None:
        if not fits(asked, width, height):
            raise ImageError(422, f"{limit_text(asked)}; {size}")
        return asked
    order = default_order(source_format)
    found = preferences(accept or "")
    acceptable = [name for name, (q, _, _) in found.items() if q > 0]
    if acceptable:
        ranked = sorted(acceptable, key=lambda name: (-found[name][0], -found[name][1], found[name][2],
                                                      order.index(name)))  # fmt: skip
    else:
        ranked = [name for name in order if name not in found]
    for name in ranked:
        if fits(name, width, height):
            return name
    if not ranked:
        raise ImageError(406, f"the Accept header refuses every format this service answers in ({', '.join(order)})")
    raise ImageError(406, "; ".join(limit_text(name) for name in ranked) + f" (the formats Accept allows); {size}")
