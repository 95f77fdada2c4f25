"""Running a scenario against an adapter, and recording what happened.

From the bottom up (each module imports only those above it in this list):

- `settings`: `RunSettings` (how the runner waits); `stops`: what stops a case or a run;
  `replay`: the command that replays a scenario file; `poll`: `poll_until`, the one back-off loop;
- `clients`: `ClientState`, one scenario client; `state`: `CaseState`, what one case shares;
- `deliveries`: what each listener must receive, and the wait for it;
- `calls`: the adapter calls (under the operation timeout, recorded) and how the model follows
  a refusal; `oracle`: the model's answer for events with two possible actions;
- the step families: `connection_steps`, `member_steps`, `listener_steps`, `sync_steps`,
  `history_steps`;
- `driver`: `CaseDriver`, which assembles them and dispatches each step by kind;
- `runner`: `run_scenario` / `run_scenarios`, which drive, then judge with the checks.

The driver drives the adapter and the reference model side by side and records what happened
(`presence_conformance.harness.record`); the checks judge the record afterwards.
"""
