package payouts

import (
	"regexp"
	"testing"
)

// TestRefusedReasonsSnakeCase: the evidence refusal reasons are metric
// labels, snake_case like every other reason label.
func TestRefusedReasonsSnakeCase(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	for _, r := range []string{RefusedUnnamed, RefusedBudget, RefusedMergedInvalid, RefusedFileDamaged} {
		if !snake.MatchString(r) {
			t.Errorf("reason %q is not snake_case", r)
		}
	}
}
