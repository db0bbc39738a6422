"""Log lines as `key=value` text, carrying `approval_id` and friends when a call passes them."""

import logging
import time

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
_STANDARD |= {"message", "asctime", "color_message"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        return line + "".join(f" {k}={v}" for k, v in extras.items())


class RepeatFilter(logging.Filter):
    """The same message from the same place at most once per `seconds`; the next one that
    passes says how many were dropped (`suppressed=N`), so a flood of requests cannot flood
    the logs. Lines carrying their own fields (`approval_id=…`) differ by those."""

    def __init__(self, seconds: float = 5.0, places: int = 1000) -> None:
        super().__init__()
        self.seconds, self.places = seconds, places
        self._seen: dict[tuple, list] = {}  # place -> [last time shown, dropped since]

    def filter(self, record: logging.LogRecord) -> bool:
        fields = tuple((k, str(v)) for k, v in vars(record).items() if k not in _STANDARD)
        place = (record.name, record.pathname, record.lineno, str(record.msg), fields)
        now = time.monotonic()
        seen = self._seen.get(place)
        if seen and now - seen[0] < self.seconds:
            seen[1] += 1
            return False
        if seen and seen[1]:
            record.suppressed = seen[1]
        if seen is None and len(self._seen) >= self.places:
            self._seen.clear()  # messages built without a template would grow it for ever
        self._seen[place] = [now, 0]
        return True


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for chatty in ("alembic", "httpx"):  # a line for every migration step / HTTP request
        logging.getLogger(chatty).setLevel(logging.WARNING)
