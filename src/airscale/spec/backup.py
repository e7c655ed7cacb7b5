"""`backup:` in the spec: scheduled backups of the metadata database, secrets and configuration."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from airscale.spec.types import SafePath


class BackupSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    every_hours: float = Field(
        0,
        ge=0,
        le=8760,
        description="Take a backup (`airscale backup`) every this many hours from a supervised "
        "`backup` component that `airscale up` starts; 0 = only by hand. Off by default because "
        "where backups go is the operator's call: a backup on the data folder's own disk does not "
        "survive that disk. 24 with `dir` on another disk suits most clusters.",
    )
    keep: int = Field(
        7,
        ge=1,
        le=1000,
        description="Scheduled backups keep this many of the cluster's newest archives in `dir` and "
        "delete older ones (other files in `dir` are never touched).",
    )
    dir: SafePath | None = Field(
        None,
        description="Folder of the archives (relative to this spec file). Empty: `backups` in "
        "cluster.data_dir, which `airscale down --purge` deletes with the cluster.",
    )

    def folder(self, data_path: Path, resolve) -> Path:
        """Where archives go: `dir` resolved like every spec path, else inside the data folder."""
        return resolve(self.dir) if self.dir is not None else data_path / "backups"
