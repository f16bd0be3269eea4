"""Bounded memory: the chunk plan, the chunk size a budget allows, and the LAKEHOUSE_RUN_MEMORY_MIB rule."""

from __future__ import annotations

import math
from datetime import date, timedelta

import dagster as dg
import pytest

from lakehouse_assets import settings
from lakehouse_assets.defs.resources import RunMemoryResource, default_resources
from lakehouse_assets.klines import memory
from lakehouse_assets.lake.chunks import Chunk, MemoryModel, plan_chunks
from lakehouse_assets.settings import ConfigError

DAYS = [date(2024, 1, 1) + timedelta(days=i) for i in range(31)]


def test_instruments_are_grouped_over_all_days_of_the_run() -> None:
    chunks = plan_chunks(list("abcdefg"), DAYS, capacity=100)  # 100 // 31 = 3 instruments per chunk
    assert [c.instruments for c in chunks] == [("a", "b", "c"), ("d", "e", "f"), ("g",)]
    assert all(c.days == tuple(DAYS) for c in chunks)
    assert [c.instrument_days for c in chunks] == [93, 93, 31]


def test_one_chunk_when_the_run_fits() -> None:
    assert plan_chunks(list("ab"), DAYS, capacity=62) == [Chunk(("a", "b"), tuple(DAYS))]


def test_days_are_cut_only_when_one_instrument_exceeds_the_capacity() -> None:
    chunks = plan_chunks(["a", "b"], DAYS[:5], capacity=2)
    assert [(c.instruments, [d.day for d in c.days]) for c in chunks] == [
        (("a",), [1, 2]), (("a",), [3, 4]), (("a",), [5]),
        (("b",), [1, 2]), (("b",), [3, 4]), (("b",), [5]),
    ]


def test_steps_that_need_contiguous_days_never_cut_them() -> None:
    chunks = plan_chunks(["a", "b"], DAYS, capacity=2, split_days=False)
    assert [(c.instruments, len(c.days)) for c in chunks] == [(("a",), 31), (("b",), 31)]


def test_an_empty_universe_is_one_chunk_so_its_days_are_still_written() -> None:
    assert plan_chunks([], DAYS[:2], capacity=10) == [Chunk((), tuple(DAYS[:2]))]
    with pytest.raises(ValueError, match=">= 1 instrument-day"):
        plan_chunks(["a"], DAYS, capacity=0)


def test_capacity_solves_the_linear_model_for_the_chunk() -> None:
    model = MemoryModel(fixed_mib=400, mib_per_instrument_day=0.8)
    assert model.capacity(2048) == 2060  # (2048 - 400) / 0.8
    assert model.peak_mib(2060) == pytest.approx(2048)
    assert model.min_budget_mib == 401
    assert model.capacity(401) == 1
    with pytest.raises(ValueError):
        MemoryModel(fixed_mib=400, mib_per_instrument_day=0)


def test_the_default_budget_cuts_400_symbols_x_31_days_into_chunks_under_2_gib() -> None:
    capacity = RunMemoryResource().capacity(memory.SILVER_KLINES)
    assert capacity == math.floor((2048 - memory.SILVER_KLINES.fixed_mib) / memory.SILVER_KLINES.mib_per_instrument_day)
    chunks = plan_chunks([f"S{i}" for i in range(400)], DAYS, capacity)
    assert sum(c.instrument_days for c in chunks) == 400 * 31
    assert max(memory.SILVER_KLINES.peak_mib(c.instrument_days) for c in chunks) <= 2048
    assert len(chunks) == math.ceil(400 / (capacity // 31))


def test_setting_rule_names_the_minimum() -> None:
    assert settings.check("LAKEHOUSE_RUN_MEMORY_MIB", "2048") == 2048
    assert settings.check("LAKEHOUSE_RUN_MEMORY_MIB", str(memory.MIN_RUN_MEMORY_MIB)) == memory.MIN_RUN_MEMORY_MIB
    for bad in (str(memory.MIN_RUN_MEMORY_MIB - 1), "2GB", "-1", "1.5"):
        with pytest.raises(ConfigError) as err:
            settings.check("LAKEHOUSE_RUN_MEMORY_MIB", bad)
        assert str(err.value) == f"LAKEHOUSE_RUN_MEMORY_MIB={bad!r}: expected an integer >= {memory.MIN_RUN_MEMORY_MIB} MiB"


def test_the_minimum_holds_the_process_and_one_instrument_day_of_every_step() -> None:
    for model in memory.MODELS:
        assert model.capacity(memory.MIN_RUN_MEMORY_MIB) >= 1
        assert model.fixed_mib + model.mib_per_instrument_day <= memory.MIN_RUN_MEMORY_MIB


def test_the_code_location_reads_the_budget_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_RUN_MEMORY_MIB", "4096")
    resource = default_resources()["run_memory"].process_config_and_initialize()  # resolves the EnvVar as a run would
    assert resource.budget_mib == 4096
    assert resource.capacity(memory.SILVER_KLINES) == memory.SILVER_KLINES.capacity(4096)
    monkeypatch.setenv("LAKEHOUSE_RUN_MEMORY_MIB", "64")
    with pytest.raises(ConfigError, match="LAKEHOUSE_RUN_MEMORY_MIB='64'"):
        default_resources()


def test_a_budget_set_in_code_is_checked_by_the_same_rule() -> None:
    with pytest.raises(dg.Failure, match="LAKEHOUSE_RUN_MEMORY_MIB='100'"):
        RunMemoryResource(budget_mib=100).capacity(memory.SILVER_KLINES)


def test_the_budget_must_hold_one_instrument_over_a_whole_run_where_days_cannot_be_cut() -> None:
    """The gap-fill and gold keep an instrument's run days together: with the default year-long runs the
    budget needs 450 + 1.2 x 366 MiB (the gap-fill's model), and the message says both ways out."""
    assert memory.min_budget_for_run(366) == 890 and memory.min_budget_for_run(31) == 488
    assert settings.load({"LAKEHOUSE_RUN_MEMORY_MIB": "890"}).errors == []
    assert settings.load({"LAKEHOUSE_RUN_MEMORY_MIB": "600"}).errors == [
        "LAKEHOUSE_RUN_MEMORY_MIB='600': below the 890 MiB that one instrument over LAKEHOUSE_DAYS_PER_RUN=366 "
        "days needs in the gap-fill and gold (they never cut an instrument's days); raise it, or set "
        "LAKEHOUSE_DAYS_PER_RUN to 125 or fewer"
    ]
    # the way out it names works, and the chunk it allows holds one instrument's whole run in every such step
    assert settings.load({"LAKEHOUSE_RUN_MEMORY_MIB": "600", "LAKEHOUSE_DAYS_PER_RUN": "125"}).errors == []
    assert all(model.capacity(600) >= 125 for model in memory.WHOLE_RUN_MODELS)
    assert settings.load({"LAKEHOUSE_RUN_MEMORY_MIB": "600", "LAKEHOUSE_DAYS_PER_RUN": "126"}).errors != []
