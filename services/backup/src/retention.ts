// Which backups a retention policy keeps, as restic and borg count: the newest `keepLast`; the
// newest backup of each of the `keepDaily` most recent UTC days that have one; the same for the
// `keepWeekly` most recent ISO weeks. A backup kept by any rule stays. Pure: ids in, ids out.
import { BackupError } from "./object-store.js";

export interface RetentionPolicy {
  keepLast?: number | undefined;
  keepDaily?: number | undefined;
  keepWeekly?: number | undefined;
}

export function backupId(now: Date): string {
  return now.toISOString().replaceAll(":", "-").replace(".", "-");
}

/** The time a backup id names (backupId's inverse). */
export function backupTime(id: string): Date {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2})-(\d{2})-(\d{2})-(\d{3})Z$/.exec(id);
  const time = m ? new Date(`${m[1]}T${m[2]}:${m[3]}:${m[4]}.${m[5]}Z`) : new Date(Number.NaN);
  if (Number.isNaN(time.getTime())) throw new BackupError(`backup id "${id}" does not name a UTC time`);
  return time;
}

export function checkPolicy(policy: RetentionPolicy): void {
  for (const [flag, n] of [
    ["--keep-last", policy.keepLast],
    ["--keep-daily", policy.keepDaily],
    ["--keep-weekly", policy.keepWeekly],
  ] as const) {
    if (n !== undefined && (!Number.isInteger(n) || n < 1))
      throw new BackupError(`${flag} must be at least 1`);
  }
}

/** The ids a policy deletes, given every id; none when the policy has no rule. */
export function beyondRetention(ids: readonly string[], policy: RetentionPolicy): string[] {
  checkPolicy(policy);
  const { keepLast, keepDaily, keepWeekly } = policy;
  if (keepLast === undefined && keepDaily === undefined && keepWeekly === undefined) return [];
  const newestFirst = [...ids].sort().reverse();
  const keep = new Set(newestFirst.slice(0, keepLast ?? 0));
  const perPeriod = (n: number | undefined, period: (d: Date) => string) => {
    if (n === undefined) return;
    const seen = new Set<string>();
    for (const id of newestFirst) {
      const p = period(backupTime(id));
      if (seen.has(p)) continue;
      if (seen.size === n) break;
      seen.add(p);
      keep.add(id);
    }
  };
  perPeriod(keepDaily, (d) => d.toISOString().slice(0, 10));
  perPeriod(keepWeekly, isoWeek);
  return [...ids].sort().filter((id) => !keep.has(id));
}

/** "2026-W49": the ISO 8601 week (Monday first; week 1 holds the year's first Thursday). */
export function isoWeek(d: Date): string {
  const thursday = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  thursday.setUTCDate(thursday.getUTCDate() + 3 - ((thursday.getUTCDay() + 6) % 7));
  const year = thursday.getUTCFullYear();
  const week = Math.floor((thursday.getTime() - Date.UTC(year, 0, 1)) / 86_400_000 / 7) + 1;
  return `${year}-W${String(week).padStart(2, "0")}`;
}
