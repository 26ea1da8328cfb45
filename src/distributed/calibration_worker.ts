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

// The tensor backend this thread would pick, started while the building thread opens the model, so the pool's
// "init" finds it up (or switches to the backend the building thread names).
await initBackend(undefined, true);
serveRequests<CalibrationRequest, CalibrationReply>(calibrationHandler(), servedFirst);
