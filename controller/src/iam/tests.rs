//! Unit tests of the policy grammar and evaluation.
