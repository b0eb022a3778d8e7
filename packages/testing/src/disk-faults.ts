// Real disk faults for the durability tests, made by the kernel, not by the code under test:
//
// - SmallFilesystem: a size-limited tmpfs; a write past its size fails with ENOSPC.
// - SlowDisk: a blkio cgroup (cgroup v1) whose processes may write to (and read from) one block
//   device at only so many requests a second; a member moved into it waits on its fsyncs, and
//   on its reads that miss the page cache (`dropCachedPages`), as on a slow disk.
// - LoopDisk: ext4 on a loop device whose image is a sparse file on a tmpfs of our own
//   (the "backing"). Filling the backing makes the loop device fail every write to a block
//   the image has not used yet, so ext4's writeback and fsync fail (ENOSPC or EIO from the
//   block layer: a thin-provisioned disk running out, a real failing write). Copying the image
//   captures what the "disk" holds at that instant: every fsync'ed write, and none of what is
//   still only in the page cache of the mounted ext4, i.e. the state after a power loss.
//
// Device-mapper (dm-error, dm-flakey, dm-log-writes) would be the textbook tools; this kernel
// has no device-mapper driver (`dmsetup targets` fails: no /dev/mapper/control) and loads no
// modules, so the loop device over a tmpfs is the closest real fault it offers.
//
// Everything here needs root, util-linux (mount, losetup, fallocate) and e2fsprogs (mkfs.ext4,
// e2fsck); `diskFaultsUnavailable()` says why a machine cannot, so tests skip with that reason.
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmdirSync,
  rmSync,
  statfsSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: 30_000,
    env: withSbin(),
  });
}

/** Everything mounted or attached by this process, undone at exit if a test did not. */
const cleanups = new Map<object, () => void>();
process.once("exit", () => {
  for (const undo of [...cleanups.values()].reverse()) {
    try {
      undo();
    } catch {
      // Best effort at exit: a mount still busy is reported by the next probe, not here.
    }
  }
});

function mountTmpfs(dir: string, bytes: number): void {
  run("mount", ["-t", "tmpfs", "-o", `size=${bytes},mode=0700`, "tmpfs", dir]);
}

const BALLAST = ".ballast";

/** A size-limited tmpfs at a new directory: writes past `bytes` fail with ENOSPC. */
export class SmallFilesystem {
  private constructor(readonly path: string) {}

  static create(bytes: number): SmallFilesystem {
    const path = mkdtempSync(join(tmpdir(), "etcd-ts-small-fs-"));
    mountTmpfs(path, bytes);
    const fs = new SmallFilesystem(path);
    cleanups.set(fs, () => fs.destroy());
    return fs;
  }

  /** Free bytes as the kernel counts them. */
  freeBytes(): number {
    const s = statfsSync(this.path);
    return s.bavail * s.bsize;
  }

  /** Takes every free byte (a ballast file): the next write that needs space fails with ENOSPC. */
  fill(): void {
    const free = this.freeBytes();
    if (free > 0) run("fallocate", ["-l", String(free), join(this.path, BALLAST)]);
  }

  /** Space returns: the ballast of fill() is gone. */
  unfill(): void {
    rmSync(join(this.path, BALLAST), { force: true });
  }

  /** Space returns: the same files, a larger limit. */
  grow(bytes: number): void {
    run("mount", ["-o", `remount,size=${bytes}`, this.path]);
  }

  destroy(): void {
    cleanups.delete(this);
    run("umount", ["-l", this.path]);
    rmSync(this.path, { recursive: true, force: true });
  }
}

export interface LoopDiskOptions {
  /** Size of the ext4 file system (the image's apparent size). */
  diskBytes?: number;
  /** Size of the tmpfs holding the image: the most the disk can ever store. */
  backingBytes?: number;
}

/** ext4 on a loop device over a sparse image on a tmpfs: see the file's comment. */
export class LoopDisk {
  private device: string;

  private constructor(
    private readonly root: string,
    readonly image: string,
    readonly mountPoint: string,
    device: string,
  ) {
    this.device = device;
  }

  /** The loop device's "major:minor", as the block cgroup controllers name devices. */
  get deviceNumber(): string {
    const rdev = statSync(this.device).rdev;
    // Linux's new_encode_dev: minor bits 0-7 and 20-31, major bits 8-19.
    return `${(rdev >> 8) & 0xfff}:${(rdev & 0xff) | ((rdev >> 12) & 0xfff00)}`;
  }

  /** A new, empty ext4 mounted at `mountPoint`. */
  static create(options: LoopDiskOptions = {}): LoopDisk {
    const root = mkdtempSync(join(tmpdir(), "etcd-ts-loop-disk-"));
    const backing = join(root, "backing");
    mkdirSync(backing);
    mountTmpfs(backing, options.backingBytes ?? 512 * 1024 * 1024);
    const image = join(backing, "disk.img");
    run("truncate", ["-s", String(options.diskBytes ?? 256 * 1024 * 1024), image]);
    const device = run("losetup", ["-f", "--show", image]).trim();
    // Journal and inode tables written now, so that only blocks the member writes are holes.
    run("mkfs.ext4", ["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", device]);
    const disk = new LoopDisk(root, image, join(root, "mnt"), device);
    mkdirSync(disk.mountPoint);
    disk.mount();
    cleanups.set(disk, () => disk.destroy());
    return disk;
  }

  /**
   * commit=600: ext4 commits its journal only when asked (fsync) or every 10 minutes, so that
   * nothing but the member's own fsyncs moves data to the disk during a test (the kernel's
   * writeback of dirty pages starts after vm.dirty_expire_centisecs, 30 s by default, longer
   * than any of these tests holds unsynced data).
   */
  private mount(): void {
    run("mount", ["-o", "commit=600", this.device, this.mountPoint]);
  }

  /**
   * From now on, every write to a block the disk has not stored before fails in the block
   * layer (the backing tmpfs is full): ext4 reports it to the next fsync.
   */
  failNewWrites(): void {
    const filler = join(this.root, "backing", "filler");
    try {
      run("dd", ["if=/dev/zero", `of=${filler}`, "bs=1M", "status=none"]);
    } catch {
      // dd ends with ENOSPC: that is the point.
    }
  }

  /** The disk stores writes again (the filler is gone). */
  acceptWrites(): void {
    rmSync(join(this.root, "backing", "filler"), { force: true });
  }

  /**
   * A disk repaired after failed writes: unmount (dropping every cached page, including those
   * whose writeback failed), e2fsck, mount again. Only what reached the device is left.
   */
  repair(): string {
    this.acceptWrites();
    run("umount", [this.mountPoint]);
    let report: string;
    try {
      report = run("e2fsck", ["-f", "-y", this.device]);
    } catch (err) {
      // Exit 1: errors corrected, which a journal aborted by failed writes may need.
      const e = err as { status?: number; stdout?: string };
      if (e.status !== 1) throw err;
      report = e.stdout ?? "";
    }
    this.mount();
    return report;
  }

  /**
   * What the disk holds now, as a new disk: what a power loss at this instant leaves. Writes
   * acknowledged by fsync are in it; writes only in the page cache are not.
   */
  powerLossImage(): LoopDisk {
    const root = mkdtempSync(join(tmpdir(), "etcd-ts-loop-disk-"));
    const backing = join(root, "backing");
    mkdirSync(backing);
    mountTmpfs(backing, statfsSync(join(this.root, "backing")).blocks * 4096);
    const image = join(backing, "disk.img");
    run("cp", ["--sparse=always", this.image, image]);
    const device = run("losetup", ["-f", "--show", image]).trim();
    const disk = new LoopDisk(root, image, join(root, "mnt"), device);
    mkdirSync(disk.mountPoint);
    // Mounting replays ext4's journal, as a reboot would.
    disk.mount();
    cleanups.set(disk, () => disk.destroy());
    return disk;
  }

  destroy(): void {
    cleanups.delete(this);
    try {
      run("umount", [this.mountPoint]);
    } catch {
      run("umount", ["-l", this.mountPoint]);
    }
    run("losetup", ["-d", this.device]);
    run("umount", ["-l", join(this.root, "backing")]);
    rmSync(this.root, { recursive: true, force: true });
  }
}

const BLKIO = "/sys/fs/cgroup/blkio";

/**
 * A blkio cgroup (cgroup v1) that limits its processes' writes to one block device to
 * `writeIops` requests a second, and their reads to `readIops`: the kernel's block layer holds
 * every request past the limit, so writes and fsyncs take as long as on a slow or overloaded
 * disk, and so do reads that reach the device. A read the page cache answers never does:
 * `dropCachedPages` evicts a directory's files first. Processes are moved in with `add` and out
 * with `remove`.
 */
export class SlowDisk {
  private constructor(
    readonly path: string,
    readonly device: string,
  ) {}

  /** `device`: "major:minor" (LoopDisk.deviceNumber). */
  static create(device: string): SlowDisk {
    const path = mkdtempSync(join(BLKIO, "etcd-ts-slow-disk-"));
    const disk = new SlowDisk(path, device);
    cleanups.set(disk, () => disk.destroy());
    return disk;
  }

  /** From now on, at most `writeIops` write requests a second to the device (0: no limit). */
  limitWrites(writeIops: number): void {
    writeFileSync(join(this.path, "blkio.throttle.write_iops_device"), `${this.device} ${writeIops}`);
  }

  /** From now on, at most `readIops` read requests a second from the device (0: no limit). */
  limitReads(readIops: number): void {
    writeFileSync(join(this.path, "blkio.throttle.read_iops_device"), `${this.device} ${readIops}`);
  }

  /** Moves a process (every thread of it) into the cgroup. */
  add(pid: number): void {
    writeFileSync(join(this.path, "cgroup.procs"), String(pid));
  }

  /** Moves a process back to the root cgroup; one that has exited is ignored. */
  remove(pid: number): void {
    try {
      writeFileSync(join(BLKIO, "cgroup.procs"), String(pid));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    }
  }

  destroy(): void {
    cleanups.delete(this);
    if (!existsSync(this.path)) return;
    this.limitWrites(0);
    this.limitReads(0);
    rmdirSync(this.path);
  }
}

/**
 * Evicts the clean cached pages of every file under `dir` (`dd iflag=nocache count=0`:
 * posix_fadvise DONTNEED on the whole file), so the next reads of them reach the device. Dirty
 * pages stay until written back. Returns how many files it went through.
 */
export function dropCachedPages(dir: string): number {
  let files = 0;
  const visit = (path: string) => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const child = join(path, entry.name);
      if (entry.isDirectory()) visit(child);
      else if (entry.isFile()) {
        try {
          run("dd", [`if=${child}`, "iflag=nocache", "count=0", "status=none"]);
          files++;
        } catch {
          // Removed meanwhile (a RocksDB compaction, a WAL release): nothing cached to drop.
        }
      }
    }
  };
  visit(dir);
  return files;
}

let slowDiskProbed: { reason: string | undefined } | undefined;

/** Why this machine cannot make a SlowDisk (on top of what LoopDisk needs), or undefined. */
export function slowDiskUnavailable(): string | undefined {
  slowDiskProbed ??= { reason: probeSlowDisk() };
  return slowDiskProbed.reason;
}

function probeSlowDisk(): string | undefined {
  const disks = diskFaultsUnavailable();
  if (disks !== undefined) return disks;
  if (!existsSync(join(BLKIO, "blkio.throttle.write_iops_device"))) {
    return `no cgroup v1 blkio throttling at ${BLKIO} (cgroup v2's io.max is not used here)`;
  }
  try {
    SlowDisk.create("7:0").destroy();
  } catch (err) {
    return `cannot make a blkio cgroup here: ${String(err)}`;
  }
  return undefined;
}

function probe(): string | undefined {
  if (process.platform !== "linux") return "needs Linux (tmpfs, loop devices, ext4)";
  if (process.getuid?.() !== 0) return "needs root (mount, losetup)";
  for (const [cmd, pkg] of [
    ["mount", "util-linux"],
    ["losetup", "util-linux"],
    ["mkfs.ext4", "e2fsprogs"],
    ["e2fsck", "e2fsprogs"],
    ["fallocate", "util-linux"],
  ] as const) {
    try {
      execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore", env: withSbin() });
    } catch {
      return `${cmd} not installed (Debian package ${pkg})`;
    }
  }
  try {
    SmallFilesystem.create(1024 * 1024).destroy();
  } catch (err) {
    return `cannot mount a tmpfs here: ${(err as { stderr?: string }).stderr ?? String(err)}`;
  }
  try {
    LoopDisk.create({ diskBytes: 16 * 1024 * 1024, backingBytes: 32 * 1024 * 1024 }).destroy();
  } catch (err) {
    return `cannot mount ext4 on a loop device here: ${(err as { stderr?: string }).stderr ?? String(err)}`;
  }
  return undefined;
}

/** These tools live in /sbin, which not every user's PATH has. */
function withSbin(): NodeJS.ProcessEnv {
  return { ...process.env, PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` };
}

let probed: { reason: string | undefined } | undefined;

/** Why this machine cannot make these faults (probed once, by mounting), or undefined when it can. */
export function diskFaultsUnavailable(): string | undefined {
  probed ??= { reason: probe() };
  return probed.reason;
}
