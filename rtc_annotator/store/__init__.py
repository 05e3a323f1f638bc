"""The artifact store: SQLAlchemy models, repository, projections, selections, migrations."""

from rtc_annotator.store.repository import NotFound, Store, StoreError, normalise_url
from rtc_annotator.store.selection import Selection, SelectionError

__all__ = ["NotFound", "Selection", "SelectionError", "Store", "StoreError", "normalise_url"]
