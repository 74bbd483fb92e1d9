"""SIMULATED NVML for demos: fake H100s with plausible moving readings. Not real hardware data.

GPU hardware cannot exist on a demo laptop or a CI runner, yet the miner exporter, its
dashboards and its alerts should be seen working end to end. :class:`SimulatedNvml` has the
surface of the ``pynvml`` module (nvidia-ml-py) that the miner's collectors call, so it is
injected where the real module would be (``python -m exporters.demo.simgpu_miner``). Everything
it reports is made up, and says so where a human looks:

* ``nvmlSystemGetDriverVersion()`` is ``"simulated"``, the VBIOS version ``"simulated"``, and
  UUIDs start with ``GPU-5150c0de-`` (``GPU-SIM...`` would not look like a UUID to tools);
* every GPU but the last runs one process of a simulated rental (the renter's ``ssh-container``)
  whose memory and per-process utilisation follow the GPU's load; the last GPU runs the SN27
  spec check for a minute every ten (:class:`SimulatedWorkloads` names them for the miner's
  ``workload`` collector, in place of ``/proc`` and Docker);
* readings follow smooth per-GPU load curves plus noise, derived from a seed and the clock:
  utilisation drives memory use, power, temperature, clocks and the P-state; energy is the
  integral of power; corrected ECC errors creep up on one GPU; an XID event (a critical error
  reported through ``nvmlEventSetWait``) arrives shortly after start and then occasionally.

Constants, ``NVMLError`` and its subclasses (``NVMLError_NotSupported``, ``NVMLError_Timeout``,
``.value`` = the NVML return code) are the real ones re-exported from ``pynvml``, so code that
catches them behaves exactly as it would against a driver. Units match NVML: percent,
milliwatts, millijoules, MHz, bytes, KB/s.

Deliberate liberties (so that every dashboard panel has data in a demo): the simulated boards
report fan speeds (real SXM H100s are passively cooled and answer NotSupported) and an empty
retired-pages list (Hopper remaps rows instead; both are exported).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pynvml as _real

SIMULATED = "simulated"

# Re-export the real constants and exception classes, so ``sim.NVMLError_NotSupported`` and
# ``sim.NVML_TEMPERATURE_GPU`` are the objects pynvml users already know.
_EXPORT_PREFIXES = (
    "NVML_",
    "NVMLError",
    "nvmlClocksEventReason",
    "nvmlClocksThrottleReason",
    "nvmlEventType",
)
globals().update({k: v for k, v in vars(_real).items() if k.startswith(_EXPORT_PREFIXES)})
NVMLError = _real.NVMLError

_MIB = 1024 * 1024
# The simulated rental: one renter process per rented GPU, and the SN27 spec check on the last GPU
# for a minute every ten.
RENTAL_PID_BASE = 7000
CHECK_PID = 7900
CHECK_EVERY_SECONDS = 600.0
CHECK_RUNS_SECONDS = 60.0


@dataclass(frozen=True)
class Model:
    """The static facts of one simulated board."""

    name: str
    memory_bytes: int
    power_limit_mw: int
    idle_power_mw: int
    max_sm_mhz: int
    idle_sm_mhz: int
    memory_mhz: int
    fans: int


H100_SXM = Model("NVIDIA H100 80GB HBM3", 81559 * _MIB, 700_000, 72_000, 1980, 345, 2619, 1)
H100_PCIE = Model("NVIDIA H100 PCIe", 81559 * _MIB, 350_000, 48_000, 1755, 345, 1593, 1)
MODELS = {"h100-sxm": H100_SXM, "h100-pcie": H100_PCIE}

# XIDs that show up on real fleets: 13 graphics engine exception, 31 MMU fault, 43 GPU stopped
# processing, 63 ECC page retirement/row remap recorded, 94 contained ECC error.
_XIDS = (13, 31, 43, 63, 94)


class _Reading:
    """Something with named fields, like the ctypes structs pynvml returns."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__})"


class _Memory(_Reading):
    total: int
    used: int
    free: int


@dataclass(eq=False)
class _Gpu:
    index: int
    model: Model
    uuid: str
    pci_bus_id: str
    phase: float
    period: float
    base_load: float
    ecc_rate: float  # corrected ECC errors per hour
    energy_mj: float = 0.0
    energy_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _EventSet:
    gpus: set[int] = field(default_factory=set)
    freed: bool = False


class SimulatedNvml:
    """A pynvml-compatible object backed by simulated GPUs (see the module docstring).

    ``gpus`` boards of ``model`` (``h100-sxm`` or ``h100-pcie``); ``seed`` fixes the load curves;
    ``first_xid_after`` seconds after ``nvmlInit`` the first XID arrives, then one every
    ``xid_interval`` seconds on average (0 disables XIDs); ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        gpus: int = 8,
        *,
        model: str = "h100-sxm",
        seed: int = 27,
        first_xid_after: float = 3.0,
        xid_interval: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"unknown simulated GPU model {model!r}; choose from {sorted(MODELS)}")
        # Real constants and errors are attributes of the instance too, so it can stand in
        # wherever the pynvml module object is expected.
        self.__dict__.update({k: v for k, v in vars(_real).items() if k.startswith(_EXPORT_PREFIXES)})
        self._clock = clock
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._initialised = 0
        self._xid_first = first_xid_after
        self._xid_interval = xid_interval
        self._next_xid: float | None = None
        self._gpus = [self._make_gpu(i, MODELS[model]) for i in range(gpus)]

    def _make_gpu(self, index: int, model: Model) -> _Gpu:
        r = self._rng
        a, b, c, d = r.getrandbits(16), r.getrandbits(16), r.getrandbits(16), r.getrandbits(48)
        uuid = f"GPU-5150c0de-{a:04x}-{b:04x}-{c:04x}-{d:012x}"
        return _Gpu(
            index=index,
            model=model,
            uuid=uuid,
            pci_bus_id=f"00000000:{(0x18 + index * 0x11) & 0xFF:02X}:00.0",
            phase=r.uniform(0, 2 * math.pi),
            period=r.uniform(240.0, 900.0),
            base_load=r.uniform(0.35, 0.8),
            ecc_rate=12.0 if index == 1 else 0.0,
        )

    def describe(self) -> str:
        """A one-line summary for log lines, e.g. ``8 simulated NVIDIA H100 80GB HBM3``."""
        names = sorted({g.model.name for g in self._gpus}) or ["GPUs"]
        return f"{len(self._gpus)} simulated {', '.join(names)}"

    # -- library and system ------------------------------------------------------------------

    def nvmlInit(self) -> None:
        with self._lock:
            self._initialised += 1
            if self._next_xid is None and self._xid_interval > 0:
                self._next_xid = self._clock() + self._xid_first

    def nvmlInitWithFlags(self, flags: int) -> None:
        self.nvmlInit()

    def nvmlShutdown(self) -> None:
        with self._lock:
            if self._initialised == 0:
                raise _real.NVMLError(_real.NVML_ERROR_UNINITIALIZED)
            self._initialised -= 1

    def _check(self) -> None:
        if self._initialised == 0:
            raise _real.NVMLError(_real.NVML_ERROR_UNINITIALIZED)

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check()
        return SIMULATED

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._check()
        return "12.550.simulated"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._check()
        return 12040

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        return self.nvmlSystemGetCudaDriverVersion()

    def nvmlDeviceGetCount(self) -> int:
        self._check()
        return len(self._gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Gpu:
        self._check()
        if not 0 <= int(index) < len(self._gpus):
            raise _real.NVMLError(_real.NVML_ERROR_INVALID_ARGUMENT)
        return self._gpus[int(index)]

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> _Gpu:
        self._check()
        text = uuid.decode() if isinstance(uuid, bytes) else uuid
        for gpu in self._gpus:
            if gpu.uuid == text:
                return gpu
        raise _real.NVMLError(_real.NVML_ERROR_NOT_FOUND)

    # -- identity -----------------------------------------------------------------------------

    def nvmlDeviceGetIndex(self, handle: _Gpu) -> int:
        return self._gpu(handle).index

    def nvmlDeviceGetUUID(self, handle: _Gpu) -> str:
        return self._gpu(handle).uuid

    def nvmlDeviceGetName(self, handle: _Gpu) -> str:
        return self._gpu(handle).model.name

    def nvmlDeviceGetPciInfo(self, handle: _Gpu) -> _Reading:
        gpu = self._gpu(handle)
        return _Reading(busId=gpu.pci_bus_id, busIdLegacy=gpu.pci_bus_id[4:], domain=0, device=0, bus=0)

    nvmlDeviceGetPciInfo_v3 = nvmlDeviceGetPciInfo

    def nvmlDeviceGetVbiosVersion(self, handle: _Gpu) -> str:
        self._gpu(handle)
        return SIMULATED

    def nvmlDeviceGetSerial(self, handle: _Gpu) -> str:
        return f"SIM{self._gpu(handle).index:010d}"

    # -- readings -----------------------------------------------------------------------------

    def _gpu(self, handle: Any) -> _Gpu:
        self._check()
        if not isinstance(handle, _Gpu) or not any(handle is g for g in self._gpus):
            raise _real.NVMLError(_real.NVML_ERROR_INVALID_ARGUMENT)
        return handle

    def _load(self, gpu: _Gpu, now: float | None = None) -> float:
        """Utilisation 0..1: a slow wave around the GPU's base load, with a little jitter."""
        t = self._clock() if now is None else now
        wave = 0.35 * math.sin(2 * math.pi * t / gpu.period + gpu.phase)
        jitter = 0.04 * math.sin(t / 7.0 + gpu.index)
        return min(1.0, max(0.0, gpu.base_load + wave + jitter))

    def _power_mw(self, gpu: _Gpu, load: float) -> float:
        m = gpu.model
        return m.idle_power_mw + (m.power_limit_mw * 0.93 - m.idle_power_mw) * load

    def nvmlDeviceGetUtilizationRates(self, handle: _Gpu) -> _Reading:
        load = self._load(self._gpu(handle))
        return _Reading(gpu=round(load * 100), memory=round(load * 62))

    def nvmlDeviceGetMemoryInfo(self, handle: _Gpu, version: Any = None) -> _Memory:
        gpu = self._gpu(handle)
        total = gpu.model.memory_bytes
        used = int(total * min(0.97, 0.01 + 0.9 * self._load(gpu)))
        used -= used % _MIB
        return _Memory(total=total, used=used, free=total - used, reserved=0)

    def nvmlDeviceGetTemperature(self, handle: _Gpu, sensor: int) -> int:
        gpu = self._gpu(handle)
        if sensor != _real.NVML_TEMPERATURE_GPU:
            raise _real.NVMLError(_real.NVML_ERROR_NOT_SUPPORTED)
        return round(31 + 45 * self._load(gpu) + gpu.index % 3)

    def nvmlDeviceGetPowerUsage(self, handle: _Gpu) -> int:
        gpu = self._gpu(handle)
        return round(self._power_mw(gpu, self._load(gpu)))

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Gpu) -> int:
        return self._gpu(handle).model.power_limit_mw

    nvmlDeviceGetPowerManagementLimit = nvmlDeviceGetEnforcedPowerLimit

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: _Gpu) -> int:
        """Millijoules since "driver load": the integral of simulated power, never decreasing."""
        gpu = self._gpu(handle)
        now = self._clock()
        with gpu.lock:
            if gpu.energy_at is None:
                # Pretend the driver loaded a day ago at average load.
                gpu.energy_mj = self._power_mw(gpu, gpu.base_load) * 86400.0
            else:
                dt = max(0.0, now - gpu.energy_at)
                gpu.energy_mj += self._power_mw(gpu, self._load(gpu, now)) * dt
            gpu.energy_at = now
            return int(gpu.energy_mj)

    def nvmlDeviceGetClockInfo(self, handle: _Gpu, clock_type: int) -> int:
        gpu = self._gpu(handle)
        if clock_type in (_real.NVML_CLOCK_SM, _real.NVML_CLOCK_GRAPHICS):
            load = self._load(gpu)
            if load < 0.05:
                return gpu.model.idle_sm_mhz
            return round(gpu.model.max_sm_mhz - (90 if load > 0.9 else 0))
        if clock_type == _real.NVML_CLOCK_MEM:
            return gpu.model.memory_mhz
        raise _real.NVMLError(_real.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetPerformanceState(self, handle: _Gpu) -> int:
        return 0 if self._load(self._gpu(handle)) >= 0.05 else 8

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: _Gpu) -> int:
        load = self._load(self._gpu(handle))
        if load < 0.05:
            return _real.nvmlClocksEventReasonGpuIdle
        if load > 0.9:
            return _real.nvmlClocksEventReasonSwPowerCap
        return _real.nvmlClocksEventReasonNone

    nvmlDeviceGetCurrentClocksThrottleReasons = nvmlDeviceGetCurrentClocksEventReasons

    def nvmlDeviceGetNumFans(self, handle: _Gpu) -> int:
        return self._gpu(handle).model.fans

    def nvmlDeviceGetFanSpeed_v2(self, handle: _Gpu, fan: int) -> int:
        gpu = self._gpu(handle)
        if not 0 <= fan < gpu.model.fans:
            raise _real.NVMLError(_real.NVML_ERROR_INVALID_ARGUMENT)
        return round(30 + 50 * self._load(gpu))

    def nvmlDeviceGetFanSpeed(self, handle: _Gpu) -> int:
        return self.nvmlDeviceGetFanSpeed_v2(handle, 0)

    def nvmlDeviceGetTotalEccErrors(self, handle: _Gpu, error_type: int, counter_type: int) -> int:
        gpu = self._gpu(handle)
        if error_type == _real.NVML_MEMORY_ERROR_TYPE_UNCORRECTED:
            return 0
        # Corrected errors creep up on one GPU: a healthy-but-watch-it board.
        hours = (self._clock() % 86400.0) / 3600.0
        return int(gpu.ecc_rate * hours)

    def nvmlDeviceGetRetiredPages(self, handle: _Gpu, source_filter: int) -> list[int]:
        self._gpu(handle)
        return []

    def nvmlDeviceGetRetiredPages_v2(self, handle: _Gpu, source_filter: int) -> list[tuple[int, int]]:
        self._gpu(handle)
        return []

    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle: _Gpu) -> int:
        self._gpu(handle)
        return _real.NVML_FEATURE_DISABLED

    def nvmlDeviceGetRemappedRows(self, handle: _Gpu) -> tuple[int, int, int, int]:
        gpu = self._gpu(handle)
        return (2 if gpu.index == 1 else 0, 0, 0, 0)

    def nvmlDeviceGetPcieThroughput(self, handle: _Gpu, counter: int) -> int:
        load = self._load(self._gpu(handle))
        kbps = 1_500_000 * load if counter == _real.NVML_PCIE_UTIL_TX_BYTES else 4_000_000 * load
        return round(kbps)

    # -- processes: a simulated rental (see SimulatedWorkloads) --------------------------------

    def _rented(self, gpu: _Gpu) -> bool:
        """All GPUs but the last run the renter's job; the last one runs the SN27 check now and then."""
        return gpu.index < max(1, len(self._gpus) - 1)

    def _check_running(self, now: float) -> bool:
        return now % CHECK_EVERY_SECONDS < CHECK_RUNS_SECONDS

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Gpu) -> list[Any]:
        gpu = self._gpu(handle)
        now = self._clock()
        if self._rented(gpu):
            used = self.nvmlDeviceGetMemoryInfo(gpu).used
            pid = RENTAL_PID_BASE + gpu.index
            return [
                _Reading(pid=pid, usedGpuMemory=used, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)
            ]
        if self._check_running(now):
            return [
                _Reading(
                    pid=CHECK_PID,
                    usedGpuMemory=512 * _MIB,
                    gpuInstanceId=0xFFFFFFFF,
                    computeInstanceId=0xFFFFFFFF,
                )
            ]
        return []

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: _Gpu) -> list[Any]:
        self._gpu(handle)
        return []

    def nvmlDeviceGetProcessUtilization(self, handle: _Gpu, timestamp: int) -> list[Any]:
        """One sample per rental process, stamped now (microseconds); NotFound when none is newer."""
        gpu = self._gpu(handle)
        now_us = int(self._clock() * 1e6)
        if not self._rented(gpu) or now_us <= timestamp:
            raise _real.NVMLError(_real.NVML_ERROR_NOT_FOUND)
        sm = round(self._load(gpu) * 100)
        return [
            _Reading(
                pid=RENTAL_PID_BASE + gpu.index,
                timeStamp=now_us,
                smUtil=sm,
                memUtil=sm // 2,
                encUtil=0,
                decUtil=0,
            )
        ]

    def nvmlDeviceGetMigMode(self, handle: _Gpu) -> list[int]:
        self._gpu(handle)
        return [_real.NVML_DEVICE_MIG_DISABLE, _real.NVML_DEVICE_MIG_DISABLE]

    def workloads(self) -> SimulatedWorkloads:
        """The pid -> workload lookup matching these processes (no /proc, no Docker: simulated)."""
        return SimulatedWorkloads(self)

    # -- events (XID) -------------------------------------------------------------------------

    def nvmlDeviceGetSupportedEventTypes(self, handle: _Gpu) -> int:
        self._gpu(handle)
        return _real.nvmlEventTypeXidCriticalError | _real.nvmlEventTypeSingleBitEccError

    def nvmlEventSetCreate(self) -> _EventSet:
        self._check()
        return _EventSet()

    def nvmlDeviceRegisterEvents(self, handle: _Gpu, event_types: int, event_set: _EventSet) -> None:
        gpu = self._gpu(handle)
        if event_types & _real.nvmlEventTypeXidCriticalError:
            event_set.gpus.add(gpu.index)

    def nvmlEventSetWait_v2(self, event_set: _EventSet, timeout_ms: int) -> _Reading:
        """Block up to ``timeout_ms``; return the next simulated XID or raise NVMLError_Timeout."""
        self._check()
        if event_set.freed:
            raise _real.NVMLError(_real.NVML_ERROR_INVALID_ARGUMENT)
        deadline = self._clock() + max(0, int(timeout_ms)) / 1000.0
        while True:
            event = self._take_xid(event_set)
            if event is not None:
                return event
            left = deadline - self._clock()
            if left <= 0:
                raise _real.NVMLError(_real.NVML_ERROR_TIMEOUT)
            time.sleep(min(left, 0.2))

    def nvmlEventSetWait(self, event_set: _EventSet, timeout_ms: int) -> _Reading:
        return self.nvmlEventSetWait_v2(event_set, timeout_ms)

    def nvmlEventSetFree(self, event_set: _EventSet) -> None:
        event_set.freed = True

    def _take_xid(self, event_set: _EventSet) -> _Reading | None:
        with self._lock:
            now = self._clock()
            if self._next_xid is None or now < self._next_xid or not event_set.gpus:
                return None
            self._next_xid = now + self._rng.expovariate(1.0 / self._xid_interval)
            gpu = self._gpus[self._rng.choice(sorted(event_set.gpus))]
            xid = self._rng.choice(_XIDS)
        return _Reading(
            device=gpu,
            eventType=_real.nvmlEventTypeXidCriticalError,
            eventData=xid,
            gpuInstanceId=0xFFFFFFFF,
            computeInstanceId=0xFFFFFFFF,
        )


class SimulatedWorkloads:
    """SIMULATED stand-in for the miner's pid -> workload resolver (``/proc`` + Docker): the
    simulated renter's pids are ``rental`` (container ``ssh-container``), the check's pid is
    ``check``, anything else ``host``. Docker "answers" with the containers that would run."""

    def __init__(self, sim: SimulatedNvml) -> None:
        self._sim = sim

    def workload(self, pid: int) -> tuple[str, str | None]:
        if pid == CHECK_PID:
            return "check", None
        if RENTAL_PID_BASE <= pid < CHECK_PID:
            return "rental", None
        return "host", None

    def refresh(self) -> bool:
        return True

    def docker_status(self) -> tuple[bool, float, dict[str, int]]:
        now = self._sim._clock()
        check = 1 if self._sim._check_running(now) else 0
        return True, now, {"rental": 1, "check": check, "other_container": 0}
