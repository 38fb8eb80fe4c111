//! The one integration-test binary of the workspace: every integration test is a module of it, so
//! the workspace links one test binary instead of one per file.

mod bot;
mod cli;
mod crash;
mod deals;
mod demo;
mod flood;
mod hostile_input;
mod hostile_peer;
mod hostile_wire;
mod nat;
mod node;
mod rep;
mod scale;
mod support;
mod vectors;
