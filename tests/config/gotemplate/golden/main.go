// Renders template cases with Go's own text/template and sprig, over LocalAI's template
// data types, for the Python renderer's golden tests (tests/config/test_gotemplate.py).
//
// Reads a JSON list of {name, template, kind, data} on stdin and writes a JSON list of
// {name, output} or {name, error, stage} to stdout. kind "prompt" decodes data into
// LocalAI's PromptTemplateData, "message" into ChatMessageTemplateData, "map" into
// map[string]interface{}. Built in GOPATH mode with Debian's packages, offline:
//
//	GOPATH=/usr/share/gocode GO111MODULE=off GOPROXY=off go run tests/config/gotemplate/golden/main.go
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
)

// LocalAI's types (core/templates/evaluator.go, pkg/functions, core/schema/message.go).
type Function struct {
	Name        string                 `json:"name"`
	Description string                 `json:"description"`
	Strict      bool                   `json:"strict"`
	Parameters  map[string]interface{} `json:"parameters"`
}

type FunctionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

type ToolCall struct {
	Index        int          `json:"index"`
	ID           string       `json:"id"`
	Type         string       `json:"type"`
	FunctionCall FunctionCall `json:"function"`
}

type PromptTemplateData struct {
	SystemPrompt         string
	SuppressSystemPrompt bool
	Input                string
	Instruction          string
	Functions            []Function
	MessageIndex         int
	ReasoningEffort      string
	Metadata             map[string]string
}

type ChatMessageTemplateData struct {
	SystemPrompt string
	Role         string
	RoleName     string
	FunctionName string
	Content      string
	MessageIndex int
	Function     bool
	FunctionCall interface{}
	LastMessage  bool
}

type messageJSON struct {
	ChatMessageTemplateData
	FunctionCall json.RawMessage
}

// A chat as LocalAI assembles it (core/templates/evaluator.go, TemplateMessages at
// mudler/LocalAI 82c191a), ported with its quirks: kind "conversation".
type Settings struct {
	Chat         string            `json:"chat"`
	ChatMessage  string            `json:"chat_message"`
	Function     string            `json:"function"`
	Roles        map[string]string `json:"roles"`
	Join         *string           `json:"join_chat_messages_by_character"`
	SystemPrompt string            `json:"system_prompt"`
}

type Message struct {
	Role         string                 `json:"role"`
	Content      string                 `json:"content"`
	Name         string                 `json:"name"`
	FunctionCall map[string]interface{} `json:"function_call"`
	ToolCalls    []ToolCall             `json:"tool_calls"`
}

type Conversation struct {
	Settings    Settings   `json:"settings"`
	Messages    []Message  `json:"messages"`
	Functions   []Function `json:"functions"`
	UseFunction bool       `json:"use_function"`
	Grammar     bool       `json:"grammar"`
}

func render(source string, data interface{}) (string, error) {
	functions := sprig.TxtFuncMap()
	delete(functions, "env")
	delete(functions, "expandenv")
	tmpl, err := template.New("prompt").Funcs(functions).Parse(source)
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, data); err != nil {
		return "", err
	}
	return out.String(), nil
}

func templateMessages(c Conversation) string {
	config := c.Settings
	suppress := false
	mess := []string{}
	for messageIndex, i := range c.Messages {
		var content string
		role := i.Role
		if (i.FunctionCall != nil || i.ToolCalls != nil) && i.Role == "assistant" {
			roleFn := "assistant_function_call"
			if config.Roles[roleFn] != "" {
				role = roleFn
			}
		}
		r := config.Roles[role]
		contentExists := i.Content != ""
		var fcall interface{}
		if i.FunctionCall != nil {
			fcall = i.FunctionCall
		}
		if len(i.ToolCalls) > 0 {
			fcall = i.ToolCalls
		}
		if config.ChatMessage != "" {
			out, err := render(config.ChatMessage, ChatMessageTemplateData{
				SystemPrompt: config.SystemPrompt, Role: r, RoleName: role, Content: i.Content, FunctionCall: fcall,
				FunctionName: i.Name, LastMessage: messageIndex == len(c.Messages)-1,
				Function: c.Grammar && messageIndex == len(c.Messages)-1, MessageIndex: messageIndex,
			})
			if err == nil {
				if out == "" {
					continue
				}
				content = out
			}
		}
		marshal := func(f interface{}) {
			j, err := json.Marshal(f)
			if err != nil {
				return
			}
			shown := string(j)
			if r != "" {
				shown = fmt.Sprint(r, " ", string(j))
			}
			if contentExists {
				content += "\n" + shown
			} else {
				content = shown
			}
		}
		if content == "" {
			if contentExists {
				content = fmt.Sprint(r, i.Content)
			}
			if i.FunctionCall != nil {
				marshal(i.FunctionCall)
			}
			if i.ToolCalls != nil {
				marshal(i.ToolCalls)
			}
			if contentExists && role == "system" {
				suppress = true
			}
		}
		mess = append(mess, content)
	}
	join := "\n"
	if config.Join != nil {
		join = *config.Join
	}
	input := strings.Join(mess, join)
	source := config.Chat
	if config.Function != "" && c.UseFunction {
		source = config.Function
	}
	if source == "" {
		return input
	}
	out, err := render(source, PromptTemplateData{SystemPrompt: config.SystemPrompt, SuppressSystemPrompt: suppress,
		Input: input, Functions: c.Functions})
	if err != nil {
		return input
	}
	return out
}

type Case struct {
	Name     string          `json:"name"`
	Template string          `json:"template"`
	Kind     string          `json:"kind"`
	Data     json.RawMessage `json:"data"`
}

type Result struct {
	Name   string  `json:"name"`
	Output *string `json:"output,omitempty"`
	Error  string  `json:"error,omitempty"`
	Stage  string  `json:"stage,omitempty"`
}

func data(c Case) (interface{}, error) {
	switch c.Kind {
	case "prompt":
		var d PromptTemplateData
		err := json.Unmarshal(c.Data, &d)
		return d, err
	case "message":
		var raw messageJSON
		if err := json.Unmarshal(c.Data, &raw); err != nil {
			return nil, err
		}
		d := raw.ChatMessageTemplateData
		if len(raw.FunctionCall) > 0 && raw.FunctionCall[0] == '[' {
			var calls []ToolCall
			if err := json.Unmarshal(raw.FunctionCall, &calls); err != nil {
				return nil, err
			}
			d.FunctionCall = calls
		} else if len(raw.FunctionCall) > 0 && string(raw.FunctionCall) != "null" {
			var call map[string]interface{}
			if err := json.Unmarshal(raw.FunctionCall, &call); err != nil {
				return nil, err
			}
			d.FunctionCall = call
		}
		return d, nil
	default:
		var d map[string]interface{}
		err := json.Unmarshal(c.Data, &d)
		return d, err
	}
}

func main() {
	var cases []Case
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	// The renderer under test leaves out what reaches the environment: so does this.
	functions := sprig.TxtFuncMap()
	delete(functions, "env")
	delete(functions, "expandenv")
	results := make([]Result, 0, len(cases))
	for _, c := range cases {
		result := Result{Name: c.Name}
		if c.Kind == "conversation" {
			var conversation Conversation
			if err := json.Unmarshal(c.Data, &conversation); err != nil {
				panic(err)
			}
			text := templateMessages(conversation)
			result.Output = &text
			results = append(results, result)
			continue
		}
		tmpl, err := template.New("prompt").Funcs(functions).Parse(c.Template)
		if err != nil {
			result.Error, result.Stage = err.Error(), "parse"
			results = append(results, result)
			continue
		}
		value, err := data(c)
		if err != nil {
			panic(err)
		}
		var out bytes.Buffer
		if err := tmpl.Execute(&out, value); err != nil {
			result.Error, result.Stage = err.Error(), "execute"
		} else {
			text := out.String()
			result.Output = &text
		}
		results = append(results, result)
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetEscapeHTML(false)
	encoder.SetIndent("", " ")
	if err := encoder.Encode(results); err != nil {
		panic(err)
	}
}
