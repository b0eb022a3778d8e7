// Failed-login budgets shared by the auth service's replicas over NATS. Each replica publishes
// the logins it decides; the others count them as their own, so N replicas behind round-robin
// gateways give a guesser one budget, not N. Events are hints, as everywhere on the control
// plane: one lost while NATS is away only leaves that replica's budget a little fuller. NATS is
// trusted like the rest of the control plane: whoever may publish there could also lock users
// out with invented failures (etcd has no failed-login limit at all).
import { randomUUID } from "node:crypto";
import { type ControlPlane, topics } from "@etcd-ts/events";

export interface Login {
  user: string;
  client: string;
  ok: boolean;
}

export class SharedBudgets {
  /** This replica, in its events (it skips its own). */
  readonly replica = randomUUID();

  constructor(private readonly controlPlane: ControlPlane) {}

  publish(login: Login): void {
    this.controlPlane.publish(topics.loginOutcome, { ...login, replica: this.replica, at: Date.now() });
  }

  /** Calls `apply` for every login another replica decides; returns the unsubscribe. */
  follow(apply: (login: Login) => void): () => void {
    return this.controlPlane.subscribe(topics.loginOutcome, (event) => {
      if (event.replica !== this.replica) apply({ user: event.user, client: event.client, ok: event.ok });
    });
  }
}
