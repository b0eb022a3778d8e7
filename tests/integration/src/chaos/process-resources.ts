// Each member process's resident memory and open file descriptors over a run, read from
// /proc: a leak shows as growth across a soak, not in any single check. A member restarted by
// the nemesis is a new process, so samples are kept per member slot, first and last apart.

import { readdir, readFile } from "node:fs/promises";

export interface ResourceSample {
  rssMiB: number;
  fds: number;
}

export interface MemberResources {
  member: number;
  samples: number;
  first: ResourceSample;
  last: ResourceSample;
  peak: ResourceSample;
}

/** RSS and open fds of one process, or undefined if it is gone (or /proc is not there). */
export async function sampleProcess(pid: number): Promise<ResourceSample | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const rssKiB = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? Number.NaN);
    const fds = (await readdir(`/proc/${pid}/fd`)).length;
    if (!Number.isFinite(rssKiB)) return undefined;
    return { rssMiB: Math.round(rssKiB / 1024), fds };
  } catch {
    return undefined;
  }
}

/**
 * Bytes the process made the block layer fetch for it (/proc/<pid>/io `read_bytes`: reads the
 * page cache answered are not in it), or undefined if it is gone or unreadable.
 */
export async function processDiskReadBytes(pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined;
  try {
    const io = await readFile(`/proc/${pid}/io`, "utf8");
    const bytes = Number(/^read_bytes:\s+(\d+)$/m.exec(io)?.[1] ?? Number.NaN);
    return Number.isFinite(bytes) ? bytes : undefined;
  } catch {
    return undefined;
  }
}

export class ResourceLog {
  private readonly byMember = new Map<number, MemberResources>();

  add(member: number, sample: ResourceSample): void {
    const seen = this.byMember.get(member);
    if (seen === undefined) {
      this.byMember.set(member, { member, samples: 1, first: sample, last: sample, peak: { ...sample } });
      return;
    }
    seen.samples++;
    seen.last = sample;
    seen.peak.rssMiB = Math.max(seen.peak.rssMiB, sample.rssMiB);
    seen.peak.fds = Math.max(seen.peak.fds, sample.fds);
  }

  /** Samples every running member now. */
  async sample(pids: ReadonlyMap<number, number>): Promise<void> {
    for (const [member, pid] of pids) {
      const s = await sampleProcess(pid);
      if (s !== undefined) this.add(member, s);
    }
  }

  report(): MemberResources[] {
    return [...this.byMember.values()].sort((a, b) => a.member - b.member);
  }
}

/** "m0 RSS 61 -> 212 MiB (peak 240), fds 31 -> 33 (peak 40), 25 samples" per member. */
export function formatResources(report: readonly MemberResources[]): string[] {
  return report.map(
    (r) =>
      `m${r.member} RSS ${r.first.rssMiB} -> ${r.last.rssMiB} MiB (peak ${r.peak.rssMiB}), ` +
      `fds ${r.first.fds} -> ${r.last.fds} (peak ${r.peak.fds}), ${r.samples} samples`,
  );
}
