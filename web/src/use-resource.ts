import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { onTopic } from "./live.js";
import type { Topic } from "./types.js";

export interface Resource<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/**
 * Loads with `load` on mount and whenever `key` changes, and again when the event stream reports
 * a change to one of `topics`. An answer that arrives after a newer request started is dropped,
 * so a slow response never overwrites a fresher one. The last good data stays shown on an error.
 */
export function useResource<T>(topics: Topic[], key: string, load: () => Promise<T>): Resource<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<unknown>();
  const [loading, setLoading] = useState(true);
  const latest = useRef(0);
  const loader = useRef(load);
  loader.current = load;

  const reload = useCallback(() => {
    const request = ++latest.current;
    setLoading(true);
    loader.current().then(
      (value) => {
        if (request !== latest.current) return;
        setData(value);
        setError(undefined);
        setLoading(false);
      },
      (failure: unknown) => {
        if (request !== latest.current) return;
        setError(failure);
        setLoading(false);
      },
    );
  }, []);

  useEffect(reload, [key, reload]);
  const topicList = topics.join(" ");
  useEffect(() => {
    const stops = topicList.split(" ").map((topic) => onTopic(topic as Topic, reload));
    return () => stops.forEach((stop) => stop());
  }, [topicList, reload]);

  return { data, error, loading, reload };
}
