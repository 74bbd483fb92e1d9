"""FAKE NVML: a stand-in for nvidia-ml-py's ``pynvml`` module, for machines without an NVIDIA GPU.

This is a fake at the hardware boundary, not a mock of our code. A :class:`FakeNvml` instance has
the same surface as the parts of ``pynvml`` the miner exporter uses, so it can be passed wherever
the real module is (or put in ``sys.modules["pynvml"]`` for a subprocess):

* functions with pynvml's names and argument order (``nvmlInit``, ``nvmlDeviceGetCount``,
  ``nvmlDeviceGetHandleByIndex``, ``nvmlDeviceGetMemoryInfo(handle)``, ``nvmlEventSetWait_v2``...),
  returning the same shapes (objects with ``.gpu/.memory``, ``.total/.used/.free``, ``.busId`` as
  bytes like the ctypes struct, lists for retired pages, a 4-tuple for remapped rows) and units
  (percent, mW, mJ, MHz, KB/s);
* ``NVMLError`` with pynvml's behaviour: ``NVMLError(code)`` builds the matching subclass
  (``NVMLError_NotSupported``, ``NVMLError_GpuIsLost``...), each with the numeric ``.value``;
* the ``NVML_*`` / ``nvmlEventType*`` / ``nvmlClocksEventReason*`` constants used.

Behaviour is scripted per GPU with :class:`FakeGpu`: ``unsupported`` names functions that raise
NotSupported, ``errors`` maps a function name to an NVML error code it raises (e.g. GpuIsLost
mid-scrape), and ``FakeNvml.init_error`` makes ``nvmlInit`` fail (LibraryNotFound,
DriverNotLoaded...). Process lists (``FakeGpu.processes``, ``graphics_processes``: pynvml's v3
objects with ``pid``, ``usedGpuMemory``, ``gpuInstanceId``, ``computeInstanceId``), per-process
utilisation samples (``util_samples``; NotFound when none are newer than the timestamp asked for,
NotSupported in MIG mode) and the MIG mode (``mig_mode``) are scripted per GPU as well. XIDs are
delivered through the event-set API with :meth:`FakeNvml.emit_xid`.
Every call is counted in ``FakeNvml.calls``.
"""

from __future__ import annotations

import queue
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_UNKNOWN = 999

_CLASS_NAMES = {
    NVML_ERROR_UNINITIALIZED: "NVMLError_Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "NVMLError_InvalidArgument",
    NVML_ERROR_NOT_SUPPORTED: "NVMLError_NotSupported",
    NVML_ERROR_NO_PERMISSION: "NVMLError_NoPermission",
    NVML_ERROR_NOT_FOUND: "NVMLError_NotFound",
    NVML_ERROR_DRIVER_NOT_LOADED: "NVMLError_DriverNotLoaded",
    NVML_ERROR_TIMEOUT: "NVMLError_Timeout",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVMLError_LibraryNotFound",
    NVML_ERROR_FUNCTION_NOT_FOUND: "NVMLError_FunctionNotFound",
    NVML_ERROR_GPU_IS_LOST: "NVMLError_GpuIsLost",
    NVML_ERROR_RESET_REQUIRED: "NVMLError_ResetRequired",
    NVML_ERROR_UNKNOWN: "NVMLError_Unknown",
}


class NVMLError(Exception):
    """Like pynvml.NVMLError: ``NVMLError(code)`` returns an instance of the code's subclass."""

    _by_value: dict[int, type[NVMLError]] = {}
    value: int

    def __new__(cls, value: int) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._by_value.get(value, NVMLError)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value: int) -> None:
        super().__init__(value)

    def __str__(self) -> str:
        return _CLASS_NAMES.get(self.value, f"NVML error {self.value}").removeprefix("NVMLError_")


def _make_error_class(code: int, name: str) -> type[NVMLError]:
    def new(cls: type[NVMLError], *args: Any) -> NVMLError:
        return NVMLError.__new__(cls, code)

    def init(self: NVMLError, *args: Any) -> None:
        Exception.__init__(self, code)

    return type(name, (NVMLError,), {"__new__": new, "__init__": init})


for _code, _name in _CLASS_NAMES.items():
    NVMLError._by_value[_code] = _make_error_class(_code, _name)
    globals()[_name] = NVMLError._by_value[_code]

NVMLError_NotSupported = NVMLError._by_value[NVML_ERROR_NOT_SUPPORTED]
NVMLError_GpuIsLost = NVMLError._by_value[NVML_ERROR_GPU_IS_LOST]
NVMLError_LibraryNotFound = NVMLError._by_value[NVML_ERROR_LIBRARY_NOT_FOUND]
NVMLError_DriverNotLoaded = NVMLError._by_value[NVML_ERROR_DRIVER_NOT_LOADED]
NVMLError_Timeout = NVMLError._by_value[NVML_ERROR_TIMEOUT]


NVML_VALUE_NOT_AVAILABLE_UINT = 0xFFFFFFFF  # gpuInstanceId/computeInstanceId outside MIG


@dataclass(frozen=True)
class FakeProcess:
    """One entry of a process list. ``used_memory=None`` is what pynvml returns when NVML reports
    NVML_VALUE_NOT_AVAILABLE (WDDM, MIG without privileges); MIG processes carry instance ids."""

    pid: int
    used_memory: int | None = 1024**3
    gpu_instance_id: int = NVML_VALUE_NOT_AVAILABLE_UINT
    compute_instance_id: int = NVML_VALUE_NOT_AVAILABLE_UINT


@dataclass(frozen=True)
class FakeUtilSample:
    """One per-process utilisation sample (``c_nvmlProcessUtilizationSample_t``); time in us."""

    pid: int
    timestamp_us: int
    sm_util: int
    mem_util: int = 0


@dataclass
class FakeGpu:
    """One scripted GPU. Units are NVML's: percent, mW, mJ, MHz, KB/s."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    pci_bus_id: str = "00000000:01:00.0"
    vbios: str = "96.00.89.00.01"
    memory_total: int = 80 * 1024**3
    memory_used: int = 1024**3
    util_gpu: int = 50
    util_memory: int = 25
    temperature: int = 40
    power_mw: int = 300_000
    power_limit_mw: int = 700_000
    energy_mj: int = 123_456_789
    sm_clock_mhz: int = 1980
    mem_clock_mhz: int = 2619
    pstate: int = 0
    clock_reasons: int = 0
    fans_percent: tuple[int, ...] = ()
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    retired_sbe: int = 0
    retired_dbe: int = 0
    retired_pending: int = 0
    remapped_rows: tuple[int, int, int, int] = (0, 0, 0, 0)
    pcie_tx_kbps: int = 1024
    pcie_rx_kbps: int = 2048
    processes: list[FakeProcess] = field(default_factory=list)  # compute
    graphics_processes: list[FakeProcess] = field(default_factory=list)
    util_samples: list[FakeUtilSample] = field(default_factory=list)
    mig_mode: tuple[int, int] | None = (0, 0)  # (current, pending); None = not MIG-capable
    unsupported: set[str] = field(default_factory=set)
    errors: dict[str, int] = field(default_factory=dict)


class FakeHandle:
    """An opaque device handle, like pynvml's ctypes pointer."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"<FakeHandle {self.index}>"


class FakeEventSet:
    """An NVML event set: the handles registered on it and a queue of pending events."""

    def __init__(self) -> None:
        self.registered: dict[int, int] = {}  # device index -> event type mask
        self.events: queue.Queue[Any] = queue.Queue()
        self.freed = False


class FakeNvml:
    """A module-like fake of pynvml. See the module docstring."""

    NVMLError = NVMLError
    NVML_SUCCESS = NVML_SUCCESS
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_GPU_IS_LOST = NVML_ERROR_GPU_IS_LOST
    NVML_ERROR_LIBRARY_NOT_FOUND = NVML_ERROR_LIBRARY_NOT_FOUND
    NVML_ERROR_DRIVER_NOT_LOADED = NVML_ERROR_DRIVER_NOT_LOADED
    NVML_ERROR_NO_PERMISSION = NVML_ERROR_NO_PERMISSION
    NVML_ERROR_TIMEOUT = NVML_ERROR_TIMEOUT
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_VOLATILE_ECC = 0
    NVML_PCIE_UTIL_TX_BYTES = 0
    NVML_PCIE_UTIL_RX_BYTES = 1
    nvmlEventTypeXidCriticalError = 0x0000000000000008
    nvmlClocksEventReasonGpuIdle = 0x001
    nvmlClocksEventReasonSwPowerCap = 0x004
    nvmlClocksEventReasonHwSlowdown = 0x008
    nvmlClocksEventReasonSwThermalSlowdown = 0x020

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        *,
        driver_version: str = "550.54.15",
        nvml_version: str = "12.550.54.15",
        cuda_driver_version: int = 12040,
        init_error: int | None = None,
    ) -> None:
        self.gpus = list(gpus or [])
        self.driver_version = driver_version
        self.nvml_version = nvml_version
        self.cuda_driver_version = cuda_driver_version
        self.init_error = init_error
        self.initialized = False
        self.calls: Counter[str] = Counter()
        self.event_sets: list[FakeEventSet] = []
        self._handles = [FakeHandle(i) for i in range(64)]
        for code, name in _CLASS_NAMES.items():
            setattr(self, name, NVMLError._by_value[code])

    # -- scripting helpers (not part of pynvml) ------------------------------------------------

    def emit_xid(self, index: int, xid: int) -> None:
        """Deliver an XID event for GPU ``index`` to every live event set it is registered on."""
        event = SimpleNamespace(
            device=self._handles[index],
            eventType=self.nvmlEventTypeXidCriticalError,
            eventData=xid,
            gpuInstanceId=0xFFFFFFFF,
            computeInstanceId=0xFFFFFFFF,
        )
        for es in self.event_sets:
            if not es.freed and es.registered.get(index, 0) & self.nvmlEventTypeXidCriticalError:
                es.events.put(event)

    # -- library lifecycle -------------------------------------------------------------------

    def _enter(self, fn: str, handle: FakeHandle | None = None) -> FakeGpu | None:
        self.calls[fn] += 1
        if fn not in ("nvmlInit", "nvmlShutdown") and not self.initialized:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        if handle is None:
            return None
        gpu = self.gpus[handle.index]
        if fn in gpu.errors:
            raise NVMLError(gpu.errors[fn])
        if fn in gpu.unsupported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return gpu

    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialized = False

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._enter("nvmlSystemGetNVMLVersion")
        return self.nvml_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return self.cuda_driver_version

    # -- devices -----------------------------------------------------------------------------

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[index]
        if "nvmlDeviceGetHandleByIndex" in gpu.errors:
            raise NVMLError(gpu.errors["nvmlDeviceGetHandleByIndex"])
        return self._handles[index]

    def nvmlDeviceGetIndex(self, handle: FakeHandle) -> int:
        self._enter("nvmlDeviceGetIndex", handle)
        return handle.index

    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str:
        gpu = self._enter("nvmlDeviceGetUUID", handle)
        assert gpu is not None
        return gpu.uuid

    def nvmlDeviceGetName(self, handle: FakeHandle) -> str:
        gpu = self._enter("nvmlDeviceGetName", handle)
        assert gpu is not None
        return gpu.name

    def nvmlDeviceGetPciInfo(self, handle: FakeHandle) -> SimpleNamespace:
        gpu = self._enter("nvmlDeviceGetPciInfo", handle)
        assert gpu is not None
        return SimpleNamespace(busId=gpu.pci_bus_id.encode(), busIdLegacy=gpu.pci_bus_id[4:].encode())

    def nvmlDeviceGetVbiosVersion(self, handle: FakeHandle) -> str:
        gpu = self._enter("nvmlDeviceGetVbiosVersion", handle)
        assert gpu is not None
        return gpu.vbios

    def nvmlDeviceGetUtilizationRates(self, handle: FakeHandle) -> SimpleNamespace:
        gpu = self._enter("nvmlDeviceGetUtilizationRates", handle)
        assert gpu is not None
        return SimpleNamespace(gpu=gpu.util_gpu, memory=gpu.util_memory)

    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle) -> SimpleNamespace:
        gpu = self._enter("nvmlDeviceGetMemoryInfo", handle)
        assert gpu is not None
        free = gpu.memory_total - gpu.memory_used
        return SimpleNamespace(total=gpu.memory_total, used=gpu.memory_used, free=free)

    def nvmlDeviceGetTemperature(self, handle: FakeHandle, sensor: int) -> int:
        gpu = self._enter("nvmlDeviceGetTemperature", handle)
        assert gpu is not None and sensor == self.NVML_TEMPERATURE_GPU
        return gpu.temperature

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:
        gpu = self._enter("nvmlDeviceGetPowerUsage", handle)
        assert gpu is not None
        return gpu.power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeHandle) -> int:
        gpu = self._enter("nvmlDeviceGetEnforcedPowerLimit", handle)
        assert gpu is not None
        return gpu.power_limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeHandle) -> int:
        gpu = self._enter("nvmlDeviceGetTotalEnergyConsumption", handle)
        assert gpu is not None
        return gpu.energy_mj

    def nvmlDeviceGetClockInfo(self, handle: FakeHandle, clock_type: int) -> int:
        gpu = self._enter("nvmlDeviceGetClockInfo", handle)
        assert gpu is not None
        return {self.NVML_CLOCK_SM: gpu.sm_clock_mhz, self.NVML_CLOCK_MEM: gpu.mem_clock_mhz}[clock_type]

    def nvmlDeviceGetPerformanceState(self, handle: FakeHandle) -> int:
        gpu = self._enter("nvmlDeviceGetPerformanceState", handle)
        assert gpu is not None
        return gpu.pstate

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: FakeHandle) -> int:
        gpu = self._enter("nvmlDeviceGetCurrentClocksEventReasons", handle)
        assert gpu is not None
        return gpu.clock_reasons

    def nvmlDeviceGetNumFans(self, handle: FakeHandle) -> int:
        gpu = self._enter("nvmlDeviceGetNumFans", handle)
        assert gpu is not None
        if not gpu.fans_percent:  # datacenter boards without fans answer NotSupported
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return len(gpu.fans_percent)

    def nvmlDeviceGetFanSpeed_v2(self, handle: FakeHandle, fan: int) -> int:
        gpu = self._enter("nvmlDeviceGetFanSpeed_v2", handle)
        assert gpu is not None
        return gpu.fans_percent[fan]

    def nvmlDeviceGetTotalEccErrors(self, handle: FakeHandle, error_type: int, counter_type: int) -> int:
        gpu = self._enter("nvmlDeviceGetTotalEccErrors", handle)
        assert gpu is not None and counter_type == self.NVML_VOLATILE_ECC
        return (
            gpu.ecc_corrected if error_type == self.NVML_MEMORY_ERROR_TYPE_CORRECTED else gpu.ecc_uncorrected
        )

    def nvmlDeviceGetRetiredPages(self, handle: FakeHandle, cause: int) -> list[int]:
        gpu = self._enter("nvmlDeviceGetRetiredPages", handle)
        assert gpu is not None
        count = gpu.retired_sbe if cause == 0 else gpu.retired_dbe
        return [0x1000 * (i + 1) for i in range(count)]

    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle: FakeHandle) -> int:
        gpu = self._enter("nvmlDeviceGetRetiredPagesPendingStatus", handle)
        assert gpu is not None
        return gpu.retired_pending

    def nvmlDeviceGetRemappedRows(self, handle: FakeHandle) -> tuple[int, int, int, int]:
        gpu = self._enter("nvmlDeviceGetRemappedRows", handle)
        assert gpu is not None
        return gpu.remapped_rows

    def nvmlDeviceGetPcieThroughput(self, handle: FakeHandle, counter: int) -> int:
        gpu = self._enter("nvmlDeviceGetPcieThroughput", handle)
        assert gpu is not None
        return gpu.pcie_tx_kbps if counter == self.NVML_PCIE_UTIL_TX_BYTES else gpu.pcie_rx_kbps

    # -- processes (v3 structs, as nvmlStructToFriendlyObject returns them) --------------------

    def _process_list(self, fn: str, handle: FakeHandle, procs: list[FakeProcess]) -> list[SimpleNamespace]:
        gpu = self._enter(fn, handle)
        assert gpu is not None
        return [
            SimpleNamespace(
                pid=p.pid,
                usedGpuMemory=p.used_memory,
                gpuInstanceId=p.gpu_instance_id,
                computeInstanceId=p.compute_instance_id,
            )
            for p in procs
        ]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeHandle) -> list[SimpleNamespace]:
        return self._process_list(
            "nvmlDeviceGetComputeRunningProcesses", handle, self.gpus[handle.index].processes
        )

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: FakeHandle) -> list[SimpleNamespace]:
        gpu = self.gpus[handle.index]
        return self._process_list("nvmlDeviceGetGraphicsRunningProcesses", handle, gpu.graphics_processes)

    def nvmlDeviceGetProcessUtilization(self, handle: FakeHandle, timestamp: int) -> list[SimpleNamespace]:
        """Samples newer than ``timestamp``; like NVML, NotFound when there are none, NotSupported
        in MIG mode."""
        gpu = self._enter("nvmlDeviceGetProcessUtilization", handle)
        assert gpu is not None
        if gpu.mig_mode is not None and gpu.mig_mode[0] == 1:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        fresh = [s for s in gpu.util_samples if s.timestamp_us > timestamp]
        if not fresh:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return [
            SimpleNamespace(
                pid=s.pid,
                timeStamp=s.timestamp_us,
                smUtil=s.sm_util,
                memUtil=s.mem_util,
                encUtil=0,
                decUtil=0,
            )
            for s in fresh
        ]

    def nvmlDeviceGetMigMode(self, handle: FakeHandle) -> list[int]:
        gpu = self._enter("nvmlDeviceGetMigMode", handle)
        assert gpu is not None
        if gpu.mig_mode is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return list(gpu.mig_mode)

    # -- events ------------------------------------------------------------------------------

    def nvmlEventSetCreate(self) -> FakeEventSet:
        self._enter("nvmlEventSetCreate")
        es = FakeEventSet()
        self.event_sets.append(es)
        return es

    def nvmlDeviceRegisterEvents(self, handle: FakeHandle, event_types: int, event_set: FakeEventSet) -> None:
        self._enter("nvmlDeviceRegisterEvents", handle)
        event_set.registered[handle.index] = event_set.registered.get(handle.index, 0) | event_types

    def nvmlEventSetWait_v2(self, event_set: FakeEventSet, timeout_ms: int) -> Any:
        self._enter("nvmlEventSetWait_v2")
        try:
            return event_set.events.get(timeout=timeout_ms / 1000.0)
        except queue.Empty:
            raise NVMLError(NVML_ERROR_TIMEOUT) from None

    def nvmlEventSetFree(self, event_set: FakeEventSet) -> None:
        self._enter("nvmlEventSetFree")
        event_set.freed = True


def eight_gpus() -> list[FakeGpu]:
    """Eight H100s with distinct, deterministic readings (benchmarks, golden file)."""
    return [
        FakeGpu(
            uuid=f"GPU-{i:08x}-0000-4000-8000-{i:012x}",
            pci_bus_id=f"00000000:{0x18 + i * 0x10:02X}:00.0",
            util_gpu=10 * i,
            memory_used=(i + 1) * 1024**3,
            temperature=30 + i,
            power_mw=100_000 + 10_000 * i,
            energy_mj=1_000_000 * (i + 1),
            clock_reasons=0x001 if i % 2 else 0x004,
        )
        for i in range(8)
    ]
