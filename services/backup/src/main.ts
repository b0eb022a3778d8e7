// `etcd-ts-backup` (services/backup): see backup-command.ts for the commands.
import { runBackupCommand } from "./backup-command.js";

const io = { out: (t: string) => process.stdout.write(t), err: (t: string) => process.stderr.write(t) };
process.exitCode = await runBackupCommand(process.argv.slice(2), io);
