"""Durable files, no torch: writability and locks (`files`), atomic directory swaps (`atomic`),
which directory a save may replace (`layout`), JSONL reading and append-safe writing (`jsonl`),
what produced a resumable file (`provenance`) and the reports a run may replace (`reports`)."""
