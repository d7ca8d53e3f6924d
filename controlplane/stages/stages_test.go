// Package stages_test plays golden objects through the simulator's KWOK stages with KWOK's own
// loader (config.Load), lifecycle engine (lifecycle.Lifecycle) and template renderer (gotpl), as
// kwok's kustomize/stage/stage_test.go does for its stages, and compares what the stages would do
// (which stages match, their weight and delay range, the events, patches and deletes they emit)
// with committed golden files.
//
// Layout, from the repository root:
//
//	tests/golden/stages/<stage>/<case>.input.yaml   one object (a Pod or a Node)
//	tests/golden/stages/<stage>/<case>.output.yaml  what every stage we ship does with it
//	tests/golden/profiles/<profile>.yaml            the stages a profile deploys (written by the Python tests)
//
// K8SIM_UPDATE_GOLDEN=1 rewrites the .output.yaml files from the current stages.
package stages_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"

	"sigs.k8s.io/kwok/pkg/apis/internalversion"
	"sigs.k8s.io/kwok/pkg/config"
	"sigs.k8s.io/kwok/pkg/utils/gotpl"
	"sigs.k8s.io/kwok/pkg/utils/lifecycle"
	"sigs.k8s.io/kwok/pkg/utils/yaml"
)

// root is the repository root: `go test` runs in the package's folder, controlplane/stages.
const root = "../.."

// now stands for the clock, as in kwok's harness, so that delays computed from timestamps
// (pod-delete's deletionTimestamp) are reproducible.
var now = time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)

func updating() bool {
	return os.Getenv("K8SIM_UPDATE_GOLDEN") == "1"
}

// stageFiles are the stage YAMLs we ship, or those in K8SIM_STAGES_DIR (to try a change to the
// stages on a copy). The folder moved from cluster/stages to k8sim/cluster/stages; either layout
// is accepted so the test works on both sides of the move.
func stageFiles(t *testing.T) []string {
	t.Helper()
	dirs := []string{filepath.Join(root, "k8sim/cluster/stages"), filepath.Join(root, "cluster/stages")}
	if dir := os.Getenv("K8SIM_STAGES_DIR"); dir != "" {
		dirs = []string{dir}
	}
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			t.Fatalf("listing %s: %v", dir, err)
		}
		if len(files) > 0 {
			return files
		}
	}
	t.Fatalf("no stage files in %v", dirs)
	return nil
}

// loadStages loads stage files with KWOK's loader, failing on any document it would skip:
// config.Load only logs documents it cannot read, and KWOK would then run without that stage.
func loadStages(t *testing.T, files ...string) []*internalversion.Stage {
	t.Helper()
	objs, err := config.Load(context.Background(), files...)
	if err != nil {
		t.Fatalf("loading %v: %v", files, err)
	}
	if other := config.FilterWithoutType[*internalversion.Stage](objs); len(other) != 0 {
		t.Fatalf("%v: %d objects that are not Stages", files, len(other))
	}
	stages := config.FilterWithType[*internalversion.Stage](objs)
	docs := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs += countDocuments(raw)
	}
	if len(stages) != docs {
		t.Fatalf("%v: KWOK loaded %d stages from %d YAML documents", files, len(stages), docs)
	}
	return stages
}

func countDocuments(raw []byte) int {
	n := 0
	for _, doc := range strings.Split("\n"+string(raw), "\n---") {
		for _, line := range strings.Split(doc, "\n") {
			line = strings.TrimSpace(line)
			if line != "" && !strings.HasPrefix(line, "#") {
				n++
				break
			}
		}
	}
	return n
}

type object interface {
	metav1.Object
	runtime.Object
}

func loadObject(t *testing.T, file string) object {
	t.Helper()
	objs, err := config.LoadUnstructured(file)
	if err != nil {
		t.Fatalf("loading %s: %v", file, err)
	}
	if len(objs) != 1 {
		t.Fatalf("%s: want exactly one object, got %d", file, len(objs))
	}
	u, ok := objs[0].(*unstructured.Unstructured)
	if !ok {
		t.Fatalf("%s: not an object: %T", file, objs[0])
	}
	// KWOK's pod and node controllers play typed objects, and for those a patch without a type
	// (every statusTemplate) is a strategic merge patch; kwok's own harness plays unstructured
	// objects, for which it is a JSON merge patch. Typed objects show what the cluster gets.
	var typed object
	switch u.GroupVersionKind() {
	case corev1.SchemeGroupVersion.WithKind("Pod"):
		typed = &corev1.Pod{}
	case corev1.SchemeGroupVersion.WithKind("Node"):
		typed = &corev1.Node{}
	default:
		return u
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, typed, true); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return typed
}

// possible returns the stages KWOK may pick for obj, as its controllers match them: only the stages
// of obj's kind, weight-0 stages dropped when another has weight.
func possible(t *testing.T, stages []*internalversion.Stage, obj object) ([]*lifecycle.Stage, *lifecycle.Event) {
	t.Helper()
	gvk := obj.GetObjectKind().GroupVersionKind()
	want := internalversion.StageResourceRef{APIGroup: gvk.GroupVersion().String(), Kind: gvk.Kind}
	ofKind := slices.DeleteFunc(slices.Clone(stages), func(s *internalversion.Stage) bool {
		return s.Spec.ResourceRef != want
	})
	lc, err := lifecycle.NewLifecycle(ofKind)
	if err != nil {
		t.Fatal(err)
	}
	event := &lifecycle.Event{Labels: obj.GetLabels(), Annotations: obj.GetAnnotations(), Data: obj}
	matched, err := lc.ListAllPossible(context.Background(), event)
	if err != nil {
		t.Fatalf("matching stages: %v", err)
	}
	return matched, event
}

// play renders what each possible stage does with obj, in the format of kwok's golden outputs.
func play(t *testing.T, stages []*internalversion.Stage, obj object) map[string]any {
	t.Helper()
	ctx := context.Background()
	gvk := obj.GetObjectKind().GroupVersionKind()
	out := map[string]any{"apiGroup": gvk.GroupVersion().String(), "kind": gvk.Kind, "name": obj.GetName()}
	if ns := obj.GetNamespace(); ns != "" {
		out["namespace"] = ns
	}
	matched, event := possible(t, stages, obj)
	played := []any{}
	for _, stage := range matched {
		meta := map[string]any{"stage": stage.Name()}
		delay, ok, err := stage.DelayRangePossible(ctx, event, now)
		if err != nil {
			t.Fatalf("delay of %s: %v", stage.Name(), err)
		}
		if ok {
			meta["delay"] = delay
		}
		weight, ok, err := stage.Weight(ctx, event)
		if err != nil {
			t.Fatalf("weight of %s: %v", stage.Name(), err)
		}
		if ok {
			meta["weight"] = weight
		}
		next := []any{}
		_, err = stage.DoSteps(0, obj.GetFinalizers(), obj, placeholderRenderer(),
			func(e *internalversion.StageEvent) error {
				next = append(next, map[string]any{"kind": "event", "type": e.Type, "reason": e.Reason, "message": e.Message})
				return nil
			},
			func() error {
				next = append(next, map[string]any{"kind": "delete"})
				return nil
			},
			func(p *lifecycle.Patch) error {
				next = append(next, formatWrite("patch", p.Type, p.Subresource, p.Data, p.Impersonation))
				return nil
			},
			func(a *lifecycle.Apply) error {
				next = append(next, formatWrite("apply", a.Type, a.Subresource, a.Data, a.Impersonation))
				return nil
			},
		)
		if err != nil {
			t.Fatalf("steps of %s: %v", stage.Name(), err)
		}
		if stage.ImmediateNextStage() {
			next = append(next, map[string]any{"kind": "immediate"})
		}
		meta["next"] = next
		played = append(played, meta)
	}
	out["stages"] = played
	return out
}

func formatWrite(kind string, typ any, subresource string, data []byte, as *internalversion.ImpersonationConfig) map[string]any {
	out := map[string]any{"kind": kind, "type": typ, "data": json.RawMessage(data)}
	if subresource != "" {
		out["subresource"] = subresource
	}
	if as != nil {
		out["impersonation"] = as.Username
	}
	return out
}

// placeholderRenderer replaces the functions whose value depends on the running KWOK (its clock,
// version, node IPs and ports, pod IP pools) with placeholders naming the call, as kwok's harness does.
func placeholderRenderer() gotpl.Renderer {
	fm := gotpl.FuncMap{}
	for _, name := range []string{"NodeIP", "NodeName", "NodePort", "PodIP", "NodeIPWith", "PodIPWith", "Now", "now", "Version"} {
		fm[name] = placeholder(name)
	}
	for _, name := range []string{"NodeIPsWith", "PodIPsWith"} {
		one := placeholder(name)
		fm[name] = func(args ...any) any {
			call := strings.Trim(one(args...).(string), "<>")
			return []any{"<0 of " + call + ">", "<1 of " + call + ">"}
		}
	}
	return gotpl.NewRenderer(fm)
}

func placeholder(name string) func(args ...any) any {
	return func(args ...any) any {
		if len(args) == 0 {
			return "<" + name + ">"
		}
		parts := make([]string, 0, len(args))
		for _, arg := range args {
			parts = append(parts, fmt.Sprintf("%#v", arg))
		}
		return "<" + name + "(" + strings.Join(parts, ", ") + ")>"
	}
}

func encode(t *testing.T, v any) []byte {
	t.Helper()
	buf := bytes.NewBuffer(nil)
	if err := yaml.NewEncoder(buf).Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func stageNames(stages []*internalversion.Stage) map[string]bool {
	names := map[string]bool{}
	for _, s := range stages {
		names[s.Name] = true
	}
	return names
}

func TestStageGolden(t *testing.T) {
	stages := loadStages(t, stageFiles(t)...)
	shipped := stageNames(stages)
	golden := filepath.Join(root, "tests", "golden", "stages")
	inputs, err := filepath.Glob(filepath.Join(golden, "*", "*.input.yaml"))
	if err != nil {
		t.Fatal(err)
	}

	// Every stage we ship has golden cases, in a folder named after it, of which at least one
	// reaches the stage: a new stage without golden data, or a renamed one, fails here.
	reached := map[string]bool{}
	cases := map[string]bool{}
	for _, input := range inputs {
		folder := filepath.Base(filepath.Dir(input))
		cases[folder] = true
		if !shipped[folder] {
			t.Errorf("%s: folder %q names no stage we ship", input, folder)
		}
		caseName := strings.TrimSuffix(filepath.Base(input), ".input.yaml")
		output := strings.TrimSuffix(input, ".input.yaml") + ".output.yaml"
		t.Run(folder+"/"+caseName, func(t *testing.T) {
			result := play(t, stages, loadObject(t, input))
			for _, s := range result["stages"].([]any) {
				if s.(map[string]any)["stage"] == folder {
					reached[folder] = true
				}
			}
			got := encode(t, result)
			if updating() {
				if err := os.WriteFile(output, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(output)
			if err != nil {
				t.Fatalf("%v (K8SIM_UPDATE_GOLDEN=1 writes it)", err)
			}
			if diff := cmp.Diff(strings.Split(string(want), "\n"), strings.Split(string(got), "\n")); diff != "" {
				t.Errorf("%s differs (-golden +stages; K8SIM_UPDATE_GOLDEN=1 rewrites it):\n%s", output, diff)
			}
		})
	}
	for name := range shipped {
		if !cases[name] {
			t.Errorf("stage %s has no golden cases in %s/%s/", name, golden, name)
		} else if !reached[name] {
			t.Errorf("no golden case in %s/%s/ reaches stage %s", golden, name, name)
		}
	}

	// An output left behind by a removed input would otherwise go unnoticed.
	outputs, err := filepath.Glob(filepath.Join(golden, "*", "*.output.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, output := range outputs {
		if _, err := os.Stat(strings.TrimSuffix(output, ".output.yaml") + ".input.yaml"); err != nil {
			t.Errorf("%s has no input", output)
		}
	}
}

// TestProfileStages loads the stages each profile deploys (tests/golden/profiles/<profile>.yaml,
// kept equal to stages_for_profile by tests/unit/test_stage_golden.py) with KWOK's loader, and
// checks which stage a pod gets where the profile decides it: `demo` replaces pod-create by
// pod-start for pods without init containers (pod-create's weight 0 drops it), `realistic` ships
// no pod-start.
func TestProfileStages(t *testing.T) {
	profiles := filepath.Join(root, "tests", "golden", "profiles")
	inputs := filepath.Join(root, "tests", "golden", "stages")
	cases := []struct {
		profile string
		input   string
		want    []string
	}{
		{"demo", "pod-start/scheduled.input.yaml", []string{"pod-start"}},
		{"demo", "pod-create/with-init-containers.input.yaml", []string{"pod-create"}},
		{"demo", "pod-create/image-pull-fault.input.yaml", []string{"pod-create"}},
		{"demo", "pod-ready/created.input.yaml", []string{"pod-ready"}},
		{"realistic", "pod-start/scheduled.input.yaml", []string{"pod-create"}},
		{"realistic", "pod-create/with-init-containers.input.yaml", []string{"pod-create"}},
		{"realistic", "pod-ready/created.input.yaml", []string{"pod-ready"}},
	}
	files, err := filepath.Glob(filepath.Join(profiles, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no profile stages in %s", profiles)
	}
	loaded := map[string][]*internalversion.Stage{}
	shipped := stageNames(loadStages(t, stageFiles(t)...))
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		loaded[name] = loadStages(t, f)
		for stage := range stageNames(loaded[name]) {
			if !shipped[stage] {
				t.Errorf("profile %s deploys stage %s, which has no file", name, stage)
			}
		}
	}
	for _, c := range cases {
		t.Run(c.profile+"/"+c.input, func(t *testing.T) {
			stages, ok := loaded[c.profile]
			if !ok {
				t.Fatalf("no %s/%s.yaml", profiles, c.profile)
			}
			matched, _ := possible(t, stages, loadObject(t, filepath.Join(inputs, c.input)))
			got := []string{}
			for _, s := range matched {
				got = append(got, s.Name())
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("possible stages (-want +got):\n%s", diff)
			}
		})
	}
}

// applyStage returns the input object as JSON data and as it is after the writes of one stage.
func applyStage(t *testing.T, input, stageName string) (before, after map[string]any, writes int) {
	t.Helper()
	stages := loadStages(t, stageFiles(t)...)
	obj := loadObject(t, filepath.Join(root, "tests", "golden", "stages", input))
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &before); err != nil {
		t.Fatal(err)
	}
	matched, _ := possible(t, stages, obj)
	i := slices.IndexFunc(matched, func(s *lifecycle.Stage) bool { return s.Name() == stageName })
	if i < 0 {
		t.Fatalf("%s: stage %s does not match", input, stageName)
	}
	current := raw
	_, err = matched[i].DoSteps(0, obj.GetFinalizers(), obj, placeholderRenderer(),
		func(*internalversion.StageEvent) error { return nil },
		func() error { t.Fatalf("%s deletes %s", stageName, input); return nil },
		func(p *lifecycle.Patch) error {
			if p.Type != types.StrategicMergePatchType {
				t.Fatalf("%s: patch type %s, want a strategic merge patch as KWOK sends for Pods and Nodes", stageName, p.Type)
			}
			// The apiserver's own strategic merge, with the merge keys of the object's Go type.
			current, err = strategicpatch.StrategicMergePatch(current, p.Data, obj)
			if err != nil {
				t.Fatalf("%s: applying its patch: %v", stageName, err)
			}
			writes++
			return nil
		},
		func(*lifecycle.Apply) error { t.Fatalf("%s applies instead of patching", stageName); return nil },
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(current, &after); err != nil {
		t.Fatal(err)
	}
	return before, after, writes
}

// field follows a path of map keys and list indexes through JSON data.
func field(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func without(v map[string]any, path ...string) map[string]any {
	raw, _ := json.Marshal(v)
	var c map[string]any
	_ = json.Unmarshal(raw, &c)
	m := c
	for _, k := range path[:len(path)-1] {
		m, _ = m[k].(map[string]any)
	}
	delete(m, path[len(path)-1])
	return c
}

func conditions(obj map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	list, _ := field(obj, "status", "conditions").([]any)
	for _, c := range list {
		m := c.(map[string]any)
		out[m["type"].(string)] = m
	}
	return out
}

func same(t *testing.T, what string, want, got any) {
	t.Helper()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s changed (-before +after):\n%s", what, diff)
	}
}

// TestStageInvariants states what the stages must do to the objects that matter most to the
// simulator, on the objects as the apiserver would store them after the stage's writes. The golden
// outputs show the same, but a regenerated golden file could hide a regression; these cannot.
func TestStageInvariants(t *testing.T) {
	t.Run("node-initialize keeps a registered node's capacity, allocatable, addresses and nodeInfo", func(t *testing.T) {
		before, after, writes := applyStage(t, "node-initialize/registered.input.yaml", "node-initialize")
		if writes != 1 {
			t.Errorf("%d writes, want 1", writes)
		}
		for _, f := range []string{"capacity", "allocatable", "addresses"} {
			same(t, "status."+f, field(before, "status", f), field(after, "status", f))
		}
		for k, v := range field(before, "status", "nodeInfo").(map[string]any) {
			same(t, "status.nodeInfo."+k, v, field(after, "status", "nodeInfo", k))
		}
		if got := field(conditions(after)["Ready"], "status"); got != "True" {
			t.Errorf("Ready is %v, want True", got)
		}
	})
	t.Run("heartbeat touches only the conditions and their heartbeat", func(t *testing.T) {
		before, after, writes := applyStage(t, "node-heartbeat-with-lease/ready.input.yaml", "node-heartbeat-with-lease")
		if writes != 1 {
			t.Errorf("%d writes, want 1", writes)
		}
		// daemonEndpoints is KWOK's own kubelet port, written identically by every node stage.
		rest := func(o map[string]any) map[string]any {
			return without(without(o, "status", "conditions"), "status", "daemonEndpoints")
		}
		same(t, "the node outside status.conditions", rest(before), rest(after))
		for typ, c := range conditions(after) {
			if c["lastHeartbeatTime"] != "<Now>" {
				t.Errorf("condition %s: lastHeartbeatTime %v, want <Now>", typ, c["lastHeartbeatTime"])
			}
			if old, ok := conditions(before)[typ]; ok {
				same(t, "condition "+typ+" status", old["status"], c["status"])
				same(t, "condition "+typ+" lastTransitionTime", old["lastTransitionTime"], c["lastTransitionTime"])
			}
		}
	})
	t.Run("fault-node-not-ready turns every condition Unknown and stops the heartbeat", func(t *testing.T) {
		before, after, writes := applyStage(t, "fault-node-not-ready/ready.input.yaml", "fault-node-not-ready")
		if writes != 1 {
			t.Errorf("%d writes, want 1", writes)
		}
		same(t, "the node outside status.conditions", without(before, "status", "conditions"), without(after, "status", "conditions"))
		if len(conditions(after)) != len(conditions(before)) {
			t.Errorf("%d conditions, want %d", len(conditions(after)), len(conditions(before)))
		}
		for typ, c := range conditions(after) {
			if c["status"] != "Unknown" {
				t.Errorf("condition %s is %v, want Unknown", typ, c["status"])
			}
			same(t, "condition "+typ+" lastHeartbeatTime", conditions(before)[typ]["lastHeartbeatTime"], c["lastHeartbeatTime"])
		}
	})
	t.Run("pod-start makes a scheduled pod Running and Ready in one write", func(t *testing.T) {
		_, after, writes := applyStage(t, "pod-start/scheduled.input.yaml", "pod-start")
		if writes != 1 {
			t.Errorf("%d writes, want 1", writes)
		}
		if got := field(after, "status", "phase"); got != "Running" {
			t.Errorf("phase %v, want Running", got)
		}
		for _, typ := range []string{"Initialized", "Ready", "ContainersReady"} {
			if got := field(conditions(after)[typ], "status"); got != "True" {
				t.Errorf("condition %s is %v, want True", typ, got)
			}
		}
		statuses, _ := field(after, "status", "containerStatuses").([]any)
		if len(statuses) != 2 {
			t.Fatalf("%d container statuses, want 2", len(statuses))
		}
		for i := range statuses {
			if field(statuses, i, "ready") != true || field(statuses, i, "state", "running", "startedAt") != "<Now>" {
				t.Errorf("container %d not ready and running: %v", i, statuses[i])
			}
		}
		if field(after, "status", "podIP") == nil || field(after, "status", "hostIP") == nil {
			t.Error("no podIP or hostIP")
		}
	})
	t.Run("pod-ready keeps the Initialized condition (merged by type, not replaced)", func(t *testing.T) {
		before, after, writes := applyStage(t, "pod-ready/created.input.yaml", "pod-ready")
		if writes != 1 {
			t.Errorf("%d writes, want 1", writes)
		}
		same(t, "condition Initialized", conditions(before)["Initialized"], conditions(after)["Initialized"])
		for _, typ := range []string{"Ready", "ContainersReady"} {
			if got := field(conditions(after)[typ], "status"); got != "True" {
				t.Errorf("condition %s is %v, want True", typ, got)
			}
		}
		same(t, "status.podIP", field(before, "status", "podIP"), field(after, "status", "podIP"))
	})
	t.Run("fault-pod-recover restarts a crashed container once and clears the fault", func(t *testing.T) {
		_, after, _ := applyStage(t, "fault-pod-recover/crash-loop.input.yaml", "fault-pod-recover")
		if got := field(after, "status", "containerStatuses", 0, "restartCount"); got != float64(3) {
			t.Errorf("restartCount %v, want 3", got)
		}
		if got := field(after, "metadata", "labels", "k8sim.io/fault"); got != nil {
			t.Errorf("fault label %v left", got)
		}
		if got := field(after, "metadata", "annotations", "k8sim.io/scenario"); got != nil {
			t.Errorf("scenario annotation %v left", got)
		}
		if got := field(conditions(after)["Ready"], "status"); got != "True" {
			t.Errorf("Ready is %v, want True", got)
		}
	})
	t.Run("fault-pod-recover keeps a running container's restartCount", func(t *testing.T) {
		before, after, _ := applyStage(t, "fault-pod-recover/probe-failed.input.yaml", "fault-pod-recover")
		same(t, "restartCount", field(before, "status", "containerStatuses", 0, "restartCount"),
			field(after, "status", "containerStatuses", 0, "restartCount"))
		same(t, "startedAt", field(before, "status", "containerStatuses", 0, "state", "running", "startedAt"),
			field(after, "status", "containerStatuses", 0, "state", "running", "startedAt"))
	})
}
