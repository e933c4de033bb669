// A group of radio buttons that reads as one control with a choice (kind of model, search mode).

export function Segmented(props: {
  name: string;
  options: { value: string; label: string; help?: string }[];
  value: string;
  onChange: (v: string) => void;
}) {
  return (
    <div class="segmented" role="radiogroup" aria-label={props.name}>
      {props.options.map((o) => (
        <label key={o.value} class={`segment ${props.value === o.value ? "on" : ""}`} title={o.help}>
          <input
            type="radio"
            name={props.name}
            value={o.value}
            checked={props.value === o.value}
            data-testid={`${props.name}-${o.value}`}
            onChange={() => props.onChange(o.value)}
          />
          <span>{o.label}</span>
        </label>
      ))}
    </div>
  );
}
