//! Agent runs. So far: the LLM providers ([`provider`]) that a run streams
//! from; the run engine that drives `agent:execute` comes next (issue 4).

pub mod provider;
