"""peewee models of the validator's ComputeDb (``compute/utils/db.py`` in the original subnet code).

The database belongs to the validator, not to us, so these models are for reading only:

* they are bound to no database; every query is executed against the read-only connection
  that :mod:`exporters.validator.snapshot` opens for one scrape (``query.execute(db)``), so two
  exporters in one process (tests) never share a binding;
* every column is a *raw* column: values come back exactly as SQLite stores them. SQLite is
  dynamically typed and the validator's writers are not strict, so a ``REAL`` column may hold
  text and a ``BOOLEAN`` may hold anything. Validation happens in the snapshot, where a bad
  value is counted instead of raising inside peewee's converters.

The ``field_type`` of each column is the type written in the original ``CREATE TABLE``
statement; :data:`exporters.validator.simulate.COMPUTE_DB_DDL` holds those statements and a test
checks that the two agree.
"""

from __future__ import annotations

from typing import Any

from peewee import Field, Model


class _RawColumn(Field):
    """A column passed through unconverted in both directions."""

    def db_value(self, value: Any) -> Any:
        return value

    def python_value(self, value: Any) -> Any:
        return value


class IntegerColumn(_RawColumn):
    field_type = "INTEGER"


class TextColumn(_RawColumn):
    field_type = "TEXT"


class RealColumn(_RawColumn):
    field_type = "REAL"


class BooleanColumn(_RawColumn):
    field_type = "BOOLEAN"


class TimestampColumn(_RawColumn):
    """``TIMESTAMP``: SQLite ``CURRENT_TIMESTAMP`` text (UTC) or a local isoformat string."""

    field_type = "TIMESTAMP"


class _ComputeDbModel(Model):
    class Meta:
        database = None
        legacy_table_names = False


class Miner(_ComputeDbModel):
    """``miner``: the uid -> hotkey pairs the validator knows (rows purged on deregistration)."""

    uid = IntegerColumn(primary_key=True)
    ss58_address = TextColumn(unique=True, null=True)

    class Meta:
        table_name = "miner"


class MinerDetails(_ComputeDbModel):
    """``miner_details``: the specs JSON a miner last published; ``no_specs_count`` counts misses."""

    id = IntegerColumn(primary_key=True)
    hotkey = TextColumn(unique=True, null=True)
    details = TextColumn(null=True)
    no_specs_count = IntegerColumn(default=0, null=True)

    class Meta:
        table_name = "miner_details"


class Stats(_ComputeDbModel):
    """``stats``: one row per uid, the entry the validator publishes as ``config.stats[uid]``."""

    uid = IntegerColumn(primary_key=True)
    hotkey = TextColumn()
    gpu_specs = TextColumn(null=True)
    score = RealColumn(null=True)
    allocated = BooleanColumn(null=True)
    own_score = BooleanColumn(null=True)
    reliability_score = RealColumn(null=True)
    created_at = TimestampColumn(null=True)

    class Meta:
        table_name = "stats"


class PogStats(_ComputeDbModel):
    """``pog_stats``: proof-of-GPU results; a failed run is a row with NULL gpu_name/num_gpus."""

    id = IntegerColumn(primary_key=True)
    hotkey = TextColumn(null=True)
    gpu_name = TextColumn(null=True)
    num_gpus = IntegerColumn(null=True)
    created_at = TimestampColumn(null=True)

    class Meta:
        table_name = "pog_stats"


class Allocation(_ComputeDbModel):
    """``allocation``: miners this validator allocated (published as ``allocated_hotkeys``)."""

    id = IntegerColumn(primary_key=True)
    hotkey = TextColumn(unique=True, null=True)
    details = TextColumn(null=True)

    class Meta:
        table_name = "allocation"


class Blacklist(_ComputeDbModel):
    """``blacklist``: penalized miners (published as ``penalized_hotkeys``)."""

    id = IntegerColumn(primary_key=True)
    hotkey = TextColumn(unique=True, null=True)
    details = TextColumn(null=True)

    class Meta:
        table_name = "blacklist"


class ChallengeDetails(_ComputeDbModel):
    """``challenge_details``: legacy proof-of-work results; it has no primary key (rowid only)."""

    uid = IntegerColumn(null=True)
    ss58_address = TextColumn(null=True)
    success = BooleanColumn(null=True)
    elapsed_time = RealColumn(null=True)
    difficulty = IntegerColumn(null=True)
    created_at = TimestampColumn(null=True)

    class Meta:
        table_name = "challenge_details"
        primary_key = False


class WandbRuns(_ComputeDbModel):
    """``wandb_runs``: the W&B run id the validator resumes, per hotkey."""

    hotkey = TextColumn(primary_key=True)
    run_id = TextColumn()

    class Meta:
        table_name = "wandb_runs"


MODELS: tuple[type[Model], ...] = (
    Miner,
    MinerDetails,
    Stats,
    PogStats,
    Allocation,
    Blacklist,
    ChallengeDetails,
    WandbRuns,
)
