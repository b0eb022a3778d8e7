import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ReadPermissions } from "./read-permissions.js";

const alice = (revision: number) => ({ username: "alice", revision });
const root = (revision: number) => ({ username: "root", revision });
const prefixA = { key: "/a/", rangeEnd: "/a0" };
const keyA = { key: "/a/", rangeEnd: "" };

describe("ReadPermissions", () => {
  it("permits exactly the (user, range) a member answered, at that auth revision", () => {
    const p = new ReadPermissions();
    assert.equal(p.permits(alice(3), prefixA), false);
    p.granted(alice(3), prefixA);
    assert.equal(p.permits(alice(3), prefixA), true);
    assert.equal(p.permits(alice(3), keyA), false, "another range, even inside the first");
    assert.equal(p.permits({ username: "bob", revision: 3 }, prefixA), false);
    assert.equal(p.permits(alice(2), prefixA), false, "an older token");
  });

  it("lets root read everything with a current token, and nobody with an old one", () => {
    const p = new ReadPermissions();
    p.observe(5);
    assert.equal(p.permits(root(5), prefixA), true);
    assert.equal(p.permits(root(4), prefixA), false);
    assert.equal(p.size, 0, "root needs no memo");
  });

  it("drops every memo when a newer auth revision is seen or an auth change goes through", () => {
    const p = new ReadPermissions();
    p.granted(alice(3), prefixA);
    p.changed();
    assert.equal(p.revision, 4);
    assert.equal(p.permits(alice(3), prefixA), false);
    assert.equal(p.size, 0);
    p.granted(alice(3), prefixA);
    assert.equal(p.size, 0, "learnt at a revision already past: not kept");
    p.granted(alice(4), prefixA);
    assert.equal(p.permits(alice(4), prefixA), true);
    p.observe(4);
    assert.equal(p.permits(alice(4), prefixA), true, "the same revision again changes nothing");
    p.observe(9);
    assert.equal(p.permits(alice(4), prefixA), false);
    assert.equal(p.permits(alice(9), prefixA), false);
  });

  it("permits nothing from an acknowledged change until the revision it led to is read back", () => {
    const p = new ReadPermissions();
    p.granted(alice(3), prefixA);
    p.changeAcknowledged();
    assert.equal(p.permits(alice(3), prefixA), false);
    assert.equal(p.permits(root(3), prefixA), false, "not even root: the revision is unknown");
    p.granted(alice(3), prefixA); // a member's answer arriving meanwhile (a lagging follower?)
    p.changeSettled(3); // AuthEnable, or a role granted twice: the revision did not move
    assert.equal(p.permits(alice(3), prefixA), false, "nothing learnt before or during the change");
    assert.equal(p.permits(root(3), prefixA), true, "current tokens are served again");
    p.changeAcknowledged();
    p.changeSettled(undefined); // the member could not be asked: taken as raised
    assert.equal(p.revision, 4);
    p.changeAcknowledged();
    p.changeAcknowledged();
    p.changeSettled(6);
    assert.equal(p.permits(root(6), prefixA), false, "one change still unsettled");
    p.changeSettled(6);
    assert.equal(p.permits(root(6), prefixA), true);
  });

  it("forgets everything on reset (auth turned on or off)", () => {
    const p = new ReadPermissions();
    p.granted(alice(3), prefixA);
    p.reset();
    assert.equal(p.permits(alice(3), prefixA), false);
  });
});
