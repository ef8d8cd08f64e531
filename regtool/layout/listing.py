"""What both readers share when they list folders: links and special files are noted, never
followed (a reader reports them through `foreign_objects()`)."""

from __future__ import annotations

from regtool.layout.reader import Issue
from regtool.storage.driver import Entry, ForeignObjectError, StorageDriver


class ForeignNotes:
    """`_list` over the driver that records every link or special file it meets."""

    driver: StorageDriver
    _foreign: dict[str, Issue]

    def foreign_objects(self) -> tuple[Issue, ...]:
        """Links and special files met so far where folders belong, never followed; each
        issue's message says what it is ("a symbolic link to '..'")."""
        return tuple(self._foreign.values())

    def _list(self, prefix: str) -> list[Entry]:
        """The children of `prefix`; a link on the way is recorded and lists nothing."""
        try:
            entries = self.driver.list(prefix)
        except ForeignObjectError as exc:
            self._note_foreign(exc.foreign, exc.what)
            return []
        for entry in entries:
            if entry.foreign is not None:
                self._note_foreign(f"{prefix}/{entry.name}", entry.foreign)
        return entries

    def _note_foreign(self, path: str, what: str) -> None:
        self._foreign.setdefault(path, Issue(path, what))
