"""Detection: sets of objects (class and box) in fields, matched one to one."""

from esszoo.models.detection import detr  # noqa: F401
