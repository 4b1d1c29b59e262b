/** A real systemd for the unit tests: the boot logic is shared with the benchmarks (scripts/lib/nspawn.mjs). */
export { UNIT_ROOT, bootSystemd, canBootSystemd, systemdTree, type BootedSystemd } from '../../scripts/lib/nspawn.mjs';
