package kubewasm

import (
	"fmt"

	events "wit_component/kubewasm_controller_events"
	log "wit_component/kubewasm_controller_log"
)

func logf(level log.Level, format string, args ...any) {
	log.Log(level, fmt.Sprintf(format, args...))
}

// Debugf writes a debug log line; the host tags it with the plugin and the object.
func Debugf(format string, args ...any) { logf(log.Level_Debug, format, args...) }

// Infof writes an info log line.
func Infof(format string, args ...any) { logf(log.Level_Info, format, args...) }

// Warnf writes a warning log line.
func Warnf(format string, args ...any) { logf(log.Level_Warn, format, args...) }

// Errorf writes an error log line.
func Errorf(format string, args ...any) { logf(log.Level_Error, format, args...) }

// Event records a Normal Event on the object being reconciled: reason is a short
// UpperCamelCase word, note a sentence for people.
func Event(reason, note string) {
	events.Publish(events.EventType_Normal, reason, note)
}

// WarningEvent records a Warning Event on the object being reconciled.
func WarningEvent(reason, note string) {
	events.Publish(events.EventType_Warning, reason, note)
}
