/**
 * The entry of a calibration worker thread of a data-parallel GradOT build
 * (docs/DISTRIBUTED.md "All cores of one machine"): it serves the pool's
 * requests with a {@link calibrationHandler}, as the building thread serves
 * those of its own slot (src/distributed/calibration_pool.ts).
 *
 * @module
 */
import { type CalibrationReply, type CalibrationRequest, calibrationHandler, servedFirst } from "./calibration_handler.ts";
import { serveRequests } from "./worker_pool.ts";
import { initBackend } from "../tensor/backend.ts";
import { loadCpuLinalgLibrary } from "../linalg/lapack_ffi.ts";

// The tensor backend this thread would pick, started while the building thread opens the model, so the pool's
// "init" finds it up (or switches to the backend the building thread names); and OpenBLAS and LAPACKE loaded,
// which the first chunk's first product otherwise waited for (about 30 ms).
await initBackend(undefined, true);
loadCpuLinalgLibrary();
serveRequests<CalibrationRequest, CalibrationReply>(calibrationHandler(), servedFirst);
