// Bare baseline Worker for `scripts/bench worker`: answers every request with a
// constant JSON body of the same shape as GET /api/v1/quota, with no auth, no
// storage and no quota lookup. Its CPU per request is what workerd costs for a
// request that does nothing; the real Worker's figure is divided by it.
const BODY = JSON.stringify({
  plan: "free",
  limit: 50,
  remaining: 50,
  reset_at: "2026-11-25T00:00:00Z",
  features: ["detect", "chat", "vision"],
});

export default {
  async fetch() {
    return new Response(BODY, {
      headers: { "content-type": "application/json; charset=utf-8" },
    });
  },
};
