// SPDX-License-Identifier: Apache-2.0

package event

import (
	"encoding/json"
	"fmt"
)

// The String methods print an event, or a part of one, as its JSON: logs
// and test failures (%v, %+v) then show values, not the addresses held by
// its pointer fields.

func jsonString(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("<%T: %v>", v, err)
	}
	return string(b)
}

func (v OOMKill) String() string            { return jsonString(v) }
func (v CgroupPressure) String() string     { return jsonString(v) }
func (v Eviction) String() string           { return jsonString(v) }
func (v EvictionRef) String() string        { return jsonString(v) }
func (v OffendingContainer) String() string { return jsonString(v) }
func (v KillRef) String() string            { return jsonString(v) }
func (v ContainerExit) String() string      { return jsonString(v) }
func (v TaskSignal) String() string         { return jsonString(v) }
func (v SignalRef) String() string          { return jsonString(v) }
func (v NodeCondition) String() string      { return jsonString(v) }
func (v Process) String() string            { return jsonString(v) }
func (v Container) String() string          { return jsonString(v) }
func (v Pod) String() string                { return jsonString(v) }
func (v Victim) String() string             { return jsonString(v) }
func (v RSS) String() string                { return jsonString(v) }
func (v Cgroup) String() string             { return jsonString(v) }
func (v OOM) String() string                { return jsonString(v) }
func (v Domain) String() string             { return jsonString(v) }
func (v Decision) String() string           { return jsonString(v) }
func (v CommitRefusal) String() string      { return jsonString(v) }
func (v Overcommit) String() string         { return jsonString(v) }
func (v NodeMemory) String() string         { return jsonString(v) }
func (v MemorySignal) String() string       { return jsonString(v) }
func (v MemoryPressure) String() string     { return jsonString(v) }
func (v PostMortem) String() string         { return jsonString(v) }
func (v MemoryBreakdown) String() string    { return jsonString(v) }
func (v TaskMemory) String() string         { return jsonString(v) }
