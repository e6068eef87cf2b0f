{# Shared SQL snippets, written to run unchanged on DuckDB and Postgres. #}

{% macro safe_ratio(numerator, denominator) -%}
    cast({{ numerator }} as double precision) / nullif({{ denominator }}, 0)
{%- endmacro %}

{% macro count_if(condition) -%}
    cast(sum(case when {{ condition }} then 1 else 0 end) as bigint)
{%- endmacro %}

{# One risk rule for terminals and customers: based on the trailing 28-day fraud rate. #}
{% macro risk_tier(fraud_count, transaction_count) -%}
    case
        when {{ fraud_count }} > 0 and {{ safe_ratio(fraud_count, transaction_count) }} >= {{ var('high_risk_fraud_rate', 0.2) }} then 'high'
        when {{ fraud_count }} > 0 then 'medium'
        else 'low'
    end
{%- endmacro %}

{# Most frequent value of `column` per `key` (ties broken alphabetically), as a CTE body. #}
{% macro most_frequent(relation, key, column) -%}
    select {{ key }}, {{ column }}
    from (
        select
            {{ key }},
            {{ column }},
            row_number() over (partition by {{ key }} order by count(*) desc, {{ column }}) as rank_in_key
        from {{ relation }}
        group by {{ key }}, {{ column }}
    ) ranked
    where rank_in_key = 1
{%- endmacro %}
