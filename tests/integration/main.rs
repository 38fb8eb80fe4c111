//! The one integration-test binary of the workspace: every integration test is a module of it, so
//! the workspace links one test binary instead of one per file.

mod bot;
mod cli;
mod deals;
mod demo;
mod nat;
mod node;
mod rep;
mod support;
mod vectors;
