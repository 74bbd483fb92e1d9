"""NVML access for the miner exporter: a session that survives a missing driver, and a per-scrape snapshot.

Data flows one way: NVML -> :class:`NvmlSnapshot` (read once per scrape by :class:`GpuReader`) ->
collectors. The ``pynvml`` module (from nvidia-ml-py) is never imported here: the caller passes the
module object in, so tests pass a documented fake (``tests/fakes/nvml.py``) and ``--help`` stays fast.

Failure policy, per the dcgm-exporter issues operators complain about:

* NVML absent or broken (no library, driver not loaded, no permission) never stops the exporter:
  the snapshot says ``up=False`` with a bounded reason, one log line says why, and ``nvmlInit`` is
  retried with exponential backoff so a driver that loads later is picked up.
* A field a GPU does not support (``NVMLError_NotSupported``) is omitted, never reported as 0, and
  remembered so it is not asked for again on every scrape.
* A GPU that is lost (``NVMLError_GpuIsLost``) mid-scrape is reported ``up=False``; the other GPUs
  are unaffected. Every NVML error is counted by a bounded reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# NVML return codes (nvml.h; a stable ABI, identical in pynvml's NVML_ERROR_* constants).
_ERROR_REASONS: dict[int, str] = {
    1: "uninitialized",
    3: "not_supported",
    4: "no_permission",
    9: "driver_not_loaded",
    10: "timeout",
    12: "library_not_found",
    13: "function_not_found",
    15: "gpu_lost",
    16: "reset_required",
    18: "version_mismatch",
    28: "gpu_lost",  # NVML_ERROR_GPU_NOT_FOUND
}

#: Every value the ``reason`` label of ``opencompute_gpu_nvml_errors_total`` can take.
NVML_ERROR_REASONS: tuple[str, ...] = (
    "not_supported",
    "function_not_found",
    "no_permission",
    "timeout",
    "gpu_lost",
    "reset_required",
    "uninitialized",
    "driver_not_loaded",
    "library_not_found",
    "version_mismatch",
    "import_error",
    "unknown",
)

_SESSION_DOWN = frozenset({"uninitialized", "driver_not_loaded", "library_not_found", "version_mismatch"})
_GPU_DOWN = frozenset({"gpu_lost", "reset_required"})
_UNSUPPORTED = frozenset({"not_supported", "function_not_found"})

# NVML enum values used below (nvml.h).
TEMPERATURE_GPU = 0
CLOCK_SM = 1
CLOCK_MEM = 2
MEMORY_ERROR_CORRECTED = 0
MEMORY_ERROR_UNCORRECTED = 1
VOLATILE_ECC = 0
RETIREMENT_MULTIPLE_SINGLE_BIT = 0
RETIREMENT_DOUBLE_BIT = 1
PCIE_UTIL_TX_BYTES = 0
PCIE_UTIL_RX_BYTES = 1
PSTATE_UNKNOWN = 32

#: The clock-event ("throttle") reason bits exported, in the contract's bounded label values.
CLOCK_EVENT_REASONS: tuple[tuple[str, int], ...] = (
    ("gpu_idle", 0x001),
    ("applications_clocks_setting", 0x002),
    ("sw_power_cap", 0x004),
    ("hw_slowdown", 0x008),
    ("sync_boost", 0x010),
    ("sw_thermal_slowdown", 0x020),
    ("hw_thermal_slowdown", 0x040),
    ("hw_power_brake_slowdown", 0x080),
    ("display_clock_setting", 0x100),
)


def error_reason(exc: BaseException) -> str:
    """Map an NVMLError (real or fake) to a bounded reason via its numeric ``.value``."""
    code = getattr(exc, "value", None)
    return _ERROR_REASONS.get(code, "unknown") if isinstance(code, int) else "unknown"


def text(value: Any) -> str:
    """pynvml returns str from most getters but raw bytes from ctypes struct fields."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _cuda_version(value: Any) -> str:
    """``12040`` -> ``"12.4"``, the way nvidia-smi prints it."""
    try:
        v = int(value)
    except (TypeError, ValueError):
        return ""
    return f"{v // 1000}.{(v % 1000) // 10}"


class NvmlSession:
    """Owns ``nvmlInit``: retried with backoff, logged once per reason, errors counted by reason.

    ``nvml`` is the pynvml module object (or a fake with the same surface), or None when it could not
    be imported; then the session is permanently down with reason ``import_error``.
    """

    def __init__(
        self,
        nvml: Any | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        retry_initial: float = 10.0,
        retry_max: float = 300.0,
    ) -> None:
        self.module = nvml
        self._clock = clock
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._delay = retry_initial
        self._next_attempt = float("-inf")
        self._lock = threading.Lock()
        self._init_lock = threading.RLock()  # the scrape and the XID thread may both call ensure()
        self._errors: dict[str, int] = dict.fromkeys(NVML_ERROR_REASONS, 0)
        self._logged_reason: str | None = None
        self.up = False
        self.reason = "import_error" if nvml is None else "uninitialized"
        self.generation = 0  # bumped on every successful init; watchers re-arm on change
        self.driver_version = ""
        self.nvml_version = ""
        self.cuda_driver_version = ""

    @property
    def error_class(self) -> type[BaseException]:
        """The module's NVMLError base class (what every NVML call raises)."""
        cls = getattr(self.module, "NVMLError", None)
        return cls if isinstance(cls, type) and issubclass(cls, BaseException) else _NeverRaised

    def count(self, reason: str) -> None:
        """Count one NVML error under its bounded reason."""
        with self._lock:
            key = reason if reason in self._errors else "unknown"
            self._errors[key] += 1

    def errors(self) -> dict[str, int]:
        """A copy of the cumulative error counts by reason (all reasons present)."""
        with self._lock:
            return dict(self._errors)

    def ensure(self) -> bool:
        """Initialise NVML if it is down and the backoff has elapsed; return whether it is up."""
        if self.up:
            return True
        with self._init_lock:
            return self._ensure_locked()

    def _ensure_locked(self) -> bool:
        if self.up:
            return True
        if self.module is None:
            if self._logged_reason != "import_error":
                self.count("import_error")
            self._note_failure("import_error", "the pynvml module (nvidia-ml-py) is not importable")
            return False
        now = self._clock()
        if now < self._next_attempt:
            return False
        try:
            self.module.nvmlInit()
        except self.error_class as exc:
            reason = error_reason(exc)
            self.count(reason)
            self._next_attempt = now + self._delay
            self._delay = min(self._delay * 2, self._retry_max)
            self._note_failure(reason, f"nvmlInit failed: {exc}; retrying in {self._next_attempt - now:.0f}s")
            return False
        self._delay = self._retry_initial
        self._read_versions()
        self.up, self.reason = True, ""
        self.generation += 1
        log.info(
            "NVML initialised: driver %s, NVML %s, CUDA %s",
            self.driver_version or "?",
            self.nvml_version or "?",
            self.cuda_driver_version or "?",
        )
        self._logged_reason = None
        return True

    def mark_down(self, reason: str) -> None:
        """NVML stopped answering (driver unloaded...): report down and re-init on the next scrape."""
        with self._init_lock:
            if self.up:
                log.warning("NVML stopped working (%s); will re-initialise", reason)
            self.up, self.reason = False, reason
            self._logged_reason = reason
            self._delay = self._retry_initial
            self._next_attempt = self._clock()

    def _note_failure(self, reason: str, message: str) -> None:
        self.up, self.reason = False, reason
        if reason != self._logged_reason:
            log.warning("NVML unavailable (reason=%s): %s; GPU metrics are omitted", reason, message)
            self._logged_reason = reason
        else:
            log.debug("NVML still unavailable (reason=%s): %s", reason, message)

    def _read_versions(self) -> None:
        nvml = self.module
        self.driver_version = self._optional(lambda: text(nvml.nvmlSystemGetDriverVersion()))
        self.nvml_version = self._optional(lambda: text(nvml.nvmlSystemGetNVMLVersion()))
        self.cuda_driver_version = self._optional(
            lambda: _cuda_version(nvml.nvmlSystemGetCudaDriverVersion())
        )

    def _optional(self, read: Callable[[], str]) -> str:
        try:
            return read()
        except (self.error_class, AttributeError) as exc:
            self.count(error_reason(exc))
            return ""


class _NeverRaised(Exception):
    """Stands in for NVMLError when the module is missing, so ``except`` clauses stay valid."""


@dataclass(frozen=True)
class GpuSample:
    """One GPU as NVML saw it during one scrape. ``None`` = not supported or not readable now."""

    index: int
    uuid: str
    up: bool
    name: str = ""
    pci_bus_id: str = ""
    vbios_version: str = ""
    utilization_ratio: float | None = None
    memory_utilization_ratio: float | None = None
    memory_total_bytes: float | None = None
    memory_used_bytes: float | None = None
    memory_free_bytes: float | None = None
    temperature_celsius: float | None = None
    power_usage_watts: float | None = None
    power_limit_watts: float | None = None
    energy_joules: float | None = None
    sm_clock_hz: float | None = None
    memory_clock_hz: float | None = None
    performance_state: int | None = None
    clock_event_reasons: int | None = None
    fan_speed_ratios: tuple[tuple[int, float], ...] = ()
    ecc_corrected: float | None = None
    ecc_uncorrected: float | None = None
    retired_pages_single_bit: int | None = None
    retired_pages_double_bit: int | None = None
    retired_pages_pending: int | None = None
    remapped_rows_correctable: int | None = None
    remapped_rows_uncorrectable: int | None = None
    remapped_rows_pending: int | None = None
    remapped_rows_failure: int | None = None
    handle: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class NvmlSnapshot:
    """Everything the GPU collectors need from one NVML read."""

    up: bool
    reason: str = ""
    driver_version: str = ""
    nvml_version: str = ""
    cuda_driver_version: str = ""
    gpus: tuple[GpuSample, ...] = ()
    taken_at: float = 0.0


class _GpuLost(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _NvmlDown(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GpuReader:
    """Reads an :class:`NvmlSnapshot`; memoised for ``max_age`` seconds so that the GPU, host-spec
    and PCIe collectors of one scrape share one NVML read. Thread-safe."""

    def __init__(self, session: NvmlSession, *, clock: Callable[[], float] = time.time, max_age: float = 1.0):
        self.session = session
        self._clock = clock
        self._max_age = max_age
        self._lock = threading.Lock()
        self._last: NvmlSnapshot | None = None
        self._unsupported: set[tuple[str, str]] = set()
        self._identity: dict[str, tuple[str, str, str]] = {}
        self._uuid_by_index: dict[int, str] = {}
        self._memory_total: dict[str, float] = {}
        self._generation = -1

    def snapshot(self, max_age: float | None = None) -> NvmlSnapshot:
        """The current snapshot, reading NVML if the last one is older than ``max_age`` (default: the
        reader's; a collector that only needs GPU handles may accept an older one)."""
        limit = self._max_age if max_age is None else max(max_age, self._max_age)
        with self._lock:
            now = self._clock()
            if self._last is not None and 0 <= now - self._last.taken_at < limit:
                return self._last
            self._last = self._read(now)
            return self._last

    def call(self, gpu: GpuSample, key: str, fn_name: str, *args: Any) -> Any | None:
        """Call one per-GPU NVML function with the snapshot's error policy; None if not available."""
        if not gpu.up or gpu.handle is None or not self.session.up:
            return None
        try:
            return self._field(gpu.handle, gpu.uuid, key, (fn_name,), *args)
        except (_GpuLost, _NvmlDown):
            return None

    def _read(self, now: float) -> NvmlSnapshot:
        s = self.session
        if not s.ensure():
            return NvmlSnapshot(up=False, reason=s.reason, taken_at=now)
        if self._generation != s.generation:
            self._unsupported.clear()
            self._identity.clear()
            self._generation = s.generation
        try:
            gpus = self._read_gpus()
        except _NvmlDown as down:
            s.mark_down(down.reason)
            return NvmlSnapshot(up=False, reason=down.reason, taken_at=now)
        return NvmlSnapshot(
            up=True,
            driver_version=s.driver_version,
            nvml_version=s.nvml_version,
            cuda_driver_version=s.cuda_driver_version,
            gpus=tuple(gpus),
            taken_at=now,
        )

    def _read_gpus(self) -> list[GpuSample]:
        nvml, err = self.session.module, self.session.error_class
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except err as exc:
            reason = error_reason(exc)
            self.session.count(reason)
            raise _NvmlDown(reason) from None
        return [self._read_gpu(index) for index in range(count)]

    def _read_gpu(self, index: int) -> GpuSample:
        nvml, err = self.session.module, self.session.error_class
        uuid = self._uuid_by_index.get(index, "")
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            uuid = text(nvml.nvmlDeviceGetUUID(handle))
        except err as exc:
            reason = error_reason(exc)
            self.session.count(reason)
            if reason in _SESSION_DOWN:
                raise _NvmlDown(reason) from None
            log.debug("GPU %d: cannot get a handle: %s", index, exc)
            return self._lost(index, uuid)
        self._uuid_by_index[index] = uuid
        try:
            return self._read_fields(index, uuid, handle)
        except _GpuLost as lost:
            log.debug("GPU %d (%s) stopped answering: %s", index, uuid, lost.reason)
            return self._lost(index, uuid)

    def _lost(self, index: int, uuid: str) -> GpuSample:
        """A GPU that stopped answering keeps its static identity and memory size (for the specs),
        never its live readings."""
        name, bus, vbios = self._identity.get(uuid, ("", "", ""))
        return GpuSample(
            index=index,
            uuid=uuid,
            up=False,
            name=name,
            pci_bus_id=bus,
            vbios_version=vbios,
            memory_total_bytes=self._memory_total.get(uuid),
        )

    def _read_identity(self, uuid: str, handle: Any) -> tuple[str, str, str]:
        if uuid in self._identity:
            return self._identity[uuid]
        name = self._field(handle, uuid, "name", ("nvmlDeviceGetName",))
        pci = self._field(handle, uuid, "pci", ("nvmlDeviceGetPciInfo",))
        vbios = self._field(handle, uuid, "vbios", ("nvmlDeviceGetVbiosVersion",))
        ident = (
            text(name) if name is not None else "",
            text(getattr(pci, "busId", "")) if pci is not None else "",
            text(vbios) if vbios is not None else "",
        )
        if name is not None:  # identity is static: remember it once the name has been read
            self._identity[uuid] = ident
        return ident

    def _read_fields(self, index: int, uuid: str, h: Any) -> GpuSample:
        name, bus, vbios = self._read_identity(uuid, h)

        def get(key: str, *fn_names: str, args: tuple[Any, ...] = ()) -> Any | None:
            return self._field(h, uuid, key, fn_names, *args)

        util = get("utilization", "nvmlDeviceGetUtilizationRates")
        mem = get("memory", "nvmlDeviceGetMemoryInfo")
        if mem is not None:
            self._memory_total[uuid] = float(mem.total)
        temp = get("temperature", "nvmlDeviceGetTemperature", args=(TEMPERATURE_GPU,))
        power = get("power_usage", "nvmlDeviceGetPowerUsage")
        limit = get("power_limit", "nvmlDeviceGetEnforcedPowerLimit")
        energy = get("energy", "nvmlDeviceGetTotalEnergyConsumption")
        sm = get("sm_clock", "nvmlDeviceGetClockInfo", args=(CLOCK_SM,))
        memclk = get("mem_clock", "nvmlDeviceGetClockInfo", args=(CLOCK_MEM,))
        pstate = get("pstate", "nvmlDeviceGetPerformanceState")
        reasons = get(
            "clock_events",
            "nvmlDeviceGetCurrentClocksEventReasons",
            "nvmlDeviceGetCurrentClocksThrottleReasons",
        )
        ecc_c = get(
            "ecc_corrected", "nvmlDeviceGetTotalEccErrors", args=(MEMORY_ERROR_CORRECTED, VOLATILE_ECC)
        )
        ecc_u = get(
            "ecc_uncorrected", "nvmlDeviceGetTotalEccErrors", args=(MEMORY_ERROR_UNCORRECTED, VOLATILE_ECC)
        )
        sbe = get("retired_sbe", "nvmlDeviceGetRetiredPages", args=(RETIREMENT_MULTIPLE_SINGLE_BIT,))
        dbe = get("retired_dbe", "nvmlDeviceGetRetiredPages", args=(RETIREMENT_DOUBLE_BIT,))
        pending = get("retired_pending", "nvmlDeviceGetRetiredPagesPendingStatus")
        remap = get("remapped_rows", "nvmlDeviceGetRemappedRows")
        return GpuSample(
            index=index,
            uuid=uuid,
            up=True,
            name=name,
            pci_bus_id=bus,
            vbios_version=vbios,
            utilization_ratio=util.gpu / 100.0 if util is not None else None,
            memory_utilization_ratio=util.memory / 100.0 if util is not None else None,
            memory_total_bytes=float(mem.total) if mem is not None else None,
            memory_used_bytes=float(mem.used) if mem is not None else None,
            memory_free_bytes=float(mem.free) if mem is not None else None,
            temperature_celsius=_num(temp),
            power_usage_watts=_scaled(power, 1e-3),
            power_limit_watts=_scaled(limit, 1e-3),
            energy_joules=_scaled(energy, 1e-3),
            sm_clock_hz=_scaled(sm, 1e6),
            memory_clock_hz=_scaled(memclk, 1e6),
            performance_state=int(pstate) if pstate is not None and int(pstate) != PSTATE_UNKNOWN else None,
            clock_event_reasons=int(reasons) if reasons is not None else None,
            fan_speed_ratios=self._fans(h, uuid),
            ecc_corrected=_num(ecc_c),
            ecc_uncorrected=_num(ecc_u),
            retired_pages_single_bit=len(sbe) if sbe is not None else None,
            retired_pages_double_bit=len(dbe) if dbe is not None else None,
            retired_pages_pending=int(pending) if pending is not None else None,
            remapped_rows_correctable=int(remap[0]) if remap is not None else None,
            remapped_rows_uncorrectable=int(remap[1]) if remap is not None else None,
            remapped_rows_pending=int(remap[2]) if remap is not None else None,
            remapped_rows_failure=int(remap[3]) if remap is not None else None,
            handle=h,
        )

    def _fans(self, h: Any, uuid: str) -> tuple[tuple[int, float], ...]:
        count = self._field(h, uuid, "fan_count", ("nvmlDeviceGetNumFans",))
        fans = []
        for fan in range(int(count or 0)):
            pct = self._field(h, uuid, f"fan{fan}", ("nvmlDeviceGetFanSpeed_v2",), fan)
            if pct is not None:
                fans.append((fan, float(pct) / 100.0))
        return tuple(fans)

    def _field(self, handle: Any, uuid: str, key: str, fn_names: tuple[str, ...], *args: Any) -> Any | None:
        """One NVML getter under the error policy (see the module docstring)."""
        if (uuid, key) in self._unsupported:
            return None
        nvml = self.session.module
        fn = next((getattr(nvml, n) for n in fn_names if hasattr(nvml, n)), None)
        if fn is None:  # an nvidia-ml-py too old to know this call
            self._unsupported.add((uuid, key))
            return None
        try:
            return fn(handle, *args)
        except self.session.error_class as exc:
            reason = error_reason(exc)
            self.session.count(reason)
            if reason in _UNSUPPORTED:
                self._unsupported.add((uuid, key))
            elif reason in _GPU_DOWN:
                raise _GpuLost(reason) from None
            elif reason in _SESSION_DOWN:
                raise _NvmlDown(reason) from None
            else:
                log.debug("GPU %s: %s failed: %s", uuid, fn_names[0], exc)
            return None


def _num(value: Any) -> float | None:
    return float(value) if value is not None else None


def _scaled(value: Any, factor: float) -> float | None:
    return float(value) * factor if value is not None else None
