// SPDX-License-Identifier: Apache-2.0

package tracer

// The C event structs are the ABI: bpf2go generates their Go twins (-type).
//go:generate go tool bpf2go -tags linux -target amd64,arm64 -type oom_event -type event_type -type victim_hook -type decision_hook -type domain_source -type signal_hook -type rss_unit -type stat_index -type signal_event -type group_fold -type siginfo_kind -type forced_by -type memcg_counters oomtrace ../bpf/oomtrace.c -- -O2 -g -Wall -Werror -I../bpf
//go:generate go tool bpf2go -tags linux -target amd64,arm64 -type refusal_event -type refusal_key -type refusal_count -type refusal_syscall -type refusal_class -type exact_hook -type refusal_stat_index refusal ../bpf/refusal.c -- -O2 -g -Wall -Werror -I../bpf
// The same programs for kernels before 5.12 (no pointer arguments of
// global functions, no atomic fetch-and-add): loaded there instead.
//go:generate go tool bpf2go -tags linux -target amd64,arm64 oomtraceInline ../bpf/oomtrace.c -- -O2 -g -Wall -Werror -I../bpf -DOOMTRACE_BEFORE_5_12
//go:generate go tool bpf2go -tags linux -target amd64,arm64 refusalInline ../bpf/refusal.c -- -O2 -g -Wall -Werror -I../bpf -DOOMTRACE_BEFORE_5_12
