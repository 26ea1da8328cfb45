/**
 * The entry of a calibration worker thread of a data-parallel GradOT build
 * (docs/DISTRIBUTED.md "All cores of one machine"): it serves the pool's
 * requests with a {@link calibrationHandler}, as the building thread serves
 * those of its own slot (src/distributed/calibration_pool.ts).
 *
 * @module
 */
import { type CalibrationReply, type CalibrationRequest, calibrationHandler } from "./calibration_handler.ts";
import { serveRequests } from "./worker_pool.ts";

serveRequests<CalibrationRequest, CalibrationReply>(calibrationHandler());
