"""Traces: the canonical schema, its validating loader and writer, the default workload
generator, and converters from public trace formats. See docs/traces.md."""

from ptsim.trace.generator import WorkloadSpec, generate_workload
from ptsim.trace.loader import TraceError, load_trace, write_trace

__all__ = ["TraceError", "WorkloadSpec", "generate_workload", "load_trace", "write_trace"]
