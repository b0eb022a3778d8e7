// Support for tests, benchmarks and local tools (the backup service's temporary member) that
// start processes on loopback.
export { freePort, freePorts } from "./free-port.js";
