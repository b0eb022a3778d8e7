// `etcd-ts-backup` (services/backup): see backup-command.ts for the commands.
import { startTracing } from "@etcd-ts/telemetry";
import { runBackupCommand } from "./backup-command.js";

const io = { out: (t: string) => process.stdout.write(t), err: (t: string) => process.stderr.write(t) };
// The SDK is loaded only when OTEL_* asks for it; shutdown exports what is still buffered.
const tracingHandle = await startTracing("backup");
process.exitCode = await runBackupCommand(process.argv.slice(2), io);
await tracingHandle?.shutdown();
